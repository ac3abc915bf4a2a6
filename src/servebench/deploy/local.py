"""Local deployment driver: `bentoml serve <tag>` on this machine, pinned and supervised.

    with local_server(tag, bentoml_home=home, cpus=[0], log_path=run_dir / "server.log") as server:
        with monitor(server, run_dir):          # server_metrics.csv + resources.csv, 1/s
            ...                                 # send load to server.url

The server runs in its own session (process group) on 127.0.0.1, on a free port unless one is
given, pinned to `cpus` (inherited by every BentoML worker). `local_server` waits for /readyz
(with a timeout and an error that shows the log's tail) and, in a `finally`, stops every
process of the server: the process group, and each worker BentoML started in a session of its
own (tracked as they appear). SIGTERM is turned into an exception while a server runs, so
`kill` of the caller stops the server as Ctrl-C does; if the caller dies without running its
`finally` (SIGKILL), the kernel sends the server SIGTERM (PR_SET_PDEATHSIG, set by the launcher
of servebench.children, not by a preexec_fn: a supervised restart starts a server from a
thread) and the service does the same for its workers.

A port already in use before the start is an error that says so; the server is ready when
GET /readyz answers 200 *and* the socket listening on its port belongs to one of the server's
processes (another server answering on the port is not this one being ready).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from servebench.bento import bentoml_exe
from servebench.children import guarded
from servebench.cpus import check_cpus
from servebench.deploy.monitor import Monitor
from servebench.layout import SERVER_LOG
from servebench.net import LOOPBACK, free_port, http_get
from servebench.settings import LocalTarget

HOST = LOOPBACK
READY_POLL_S = 0.25
STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 40


class ServerStartError(RuntimeError):
    """The server exited or did not become ready in time; the message has the log's tail."""


class Terminated(SystemExit):
    """SIGTERM (or SIGHUP) arrived while a server was running."""


@dataclass
class LocalServer:
    """A running `bentoml serve`: its URL, main process and every process it started."""

    tag: str
    host: str
    port: int
    cpus: list[int]
    log_path: Path
    process: subprocess.Popen
    started_at_s: float = field(default_factory=time.time)
    _known: dict[int, psutil.Process] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def processes(self) -> list[psutil.Process]:
        """The main process and all its descendants that are alive, also those that outlived
        their parent (tracked since they were first seen)."""
        with self._lock:
            try:
                main = psutil.Process(self.process.pid)
                found = [main, *main.children(recursive=True)]
            except psutil.NoSuchProcess:
                found = []
            for process in found:
                self._known.setdefault(process.pid, process)
            alive = []
            for pid, process in list(self._known.items()):
                if _alive(process):
                    alive.append(process)
                else:
                    del self._known[pid]
            return alive

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        return log_tail(self.log_path, lines)


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "(no server log)"
    return "\n".join(text.rstrip().splitlines()[-lines:]) or "(server log is empty)"


def port_holders(port: int) -> list[psutil.Process]:
    """The processes with a TCP socket listening on `port` (any address), as far as this
    user may see them."""
    holders: dict[int, psutil.Process] = {}
    with contextlib.suppress(psutil.Error):
        for connection in psutil.net_connections(kind="tcp"):
            if (
                connection.status == psutil.CONN_LISTEN
                and connection.laddr
                and connection.laddr.port == port
                and connection.pid
            ):
                with contextlib.suppress(psutil.Error):
                    holders[connection.pid] = psutil.Process(connection.pid)
    return list(holders.values())


def _describe(processes: Sequence[psutil.Process]) -> str:
    names = []
    for process in processes:
        try:
            names.append(f"pid {process.pid} ({' '.join(process.cmdline())[:120]})")
        except psutil.Error:
            names.append(f"pid {process.pid}")
    return ", ".join(names) or "a process this user cannot see"


def check_port_free(host: str, port: int) -> None:
    """ServerStartError when `port` on `host` is taken (bound the way the server will bind it,
    SO_REUSEADDR: a port left in TIME_WAIT by a killed server is free)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno != errno.EADDRINUSE:
                raise
            raise ServerStartError(
                f"port {port} on {host} is already in use, by {_describe(port_holders(port))}: "
                "stop that server or choose another port"
            ) from None


def listens_on_port(server: LocalServer) -> bool:
    """Whether one of the server's processes has the socket listening on its port."""
    for process in server.processes():
        with contextlib.suppress(psutil.Error):
            for connection in process.net_connections(kind="tcp"):
                if (
                    connection.status == psutil.CONN_LISTEN
                    and connection.laddr
                    and connection.laddr.port == server.port
                ):
                    return True
    return False


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """While a server runs, SIGTERM/SIGHUP raise Terminated so that `finally` blocks run. Only
    the first one raises: a second SIGTERM (a supervisor repeating itself) must not cut short
    the teardown that the first one started (a K3s deployment's delete, its port-forward)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}
    raised: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if raised:
            return
        raised.append(signum)
        raise Terminated(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        current = signal.getsignal(signum)
        if current in (signal.SIG_DFL, None):
            previous[signum] = current
            signal.signal(signum, handler)
    try:
        yield
    finally:
        for signum, current in previous.items():
            signal.signal(signum, current if current is not None else signal.SIG_DFL)


# Thread counts the runtimes read from the environment. Snakemake sets them to a job's
# `threads` (all cores for a measurement rule): inherited, they would give the baseline's
# PyTorch 4 threads on its 1 core. A variant's threads are its own (threads_per_worker).
THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "GOTO_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)


def server_env(bentoml_home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The server's environment: this process's, without inherited thread counts."""
    env = {key: value for key, value in os.environ.items() if key not in THREAD_ENV_VARS}
    env.update(
        {
            "BENTOML_HOME": str(Path(bentoml_home).resolve()),
            "BENTOML_DO_NOT_TRACK": "true",
            "HF_HUB_OFFLINE": "1",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def start_server(
    tag: str,
    *,
    bentoml_home: str | Path,
    log_path: str | Path,
    cpus: Sequence[int] | None = None,
    port: int | None = None,
    host: str = HOST,
    extra_env: dict[str, str] | None = None,
) -> LocalServer:
    """Start `bentoml serve <tag>` in its own session; does not wait for readiness."""
    cores = check_cpus(cpus) if cpus else []
    port = port or free_port(host)
    check_port_free(host, port)
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [bentoml_exe(), "serve", tag, "--host", host, "--port", str(port)]
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"# {' '.join(command)}  (cpus {cores or 'all'})\n")
        log.flush()
        # Pinned, SIGTERMed by the kernel when the starting thread dies: the launcher
        # (servebench.children) sets both and execs bentoml, no preexec_fn.
        process = subprocess.Popen(
            guarded(command, cpus=cores, death_signal=signal.SIGTERM),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(bentoml_home, extra_env),
            start_new_session=True,
        )
    return LocalServer(
        tag=tag, host=host, port=port, cpus=cores, log_path=log_path, process=process
    )


def wait_ready(server: LocalServer, timeout_s: float) -> float:
    """Block until GET /readyz answers 200; return the seconds it took."""
    started = time.monotonic()
    while True:
        server.processes()  # track the workers as they appear
        code = server.process.poll()
        if code is not None:
            raise ServerStartError(
                f"bentoml serve {server.tag} exited with code {code} before it was ready; "
                f"last lines of {server.log_path}:\n{server.log_tail()}"
            )
        status, _ = http_get(server.url + "/readyz", timeout_s=1.0)
        if status == 200:
            if listens_on_port(server):
                return time.monotonic() - started
            raise ServerStartError(
                f"port {server.port} answers GET /readyz, but its listening socket belongs to"
                f" {_describe(port_holders(server.port))}, not to bentoml serve {server.tag}"
                f" (pid {server.pid}): another server holds the port"
            )
        if time.monotonic() - started > timeout_s:
            raise ServerStartError(
                f"bentoml serve {server.tag} was not ready after {timeout_s:.0f} s "
                f"(GET /readyz: {status or 'no answer'}); last lines of {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        time.sleep(READY_POLL_S)


# BentoML binds its HTTP port and its process manager's ZMQ ports, each picked free a moment
# before: another process can take one in between, and the server exits with this error.
PORT_CLASH = "Address already in use"
START_ATTEMPTS = 3


def start_ready_server(
    tag: str,
    *,
    bentoml_home: str | Path,
    log_path: str | Path,
    cpus: Sequence[int] | None,
    port: int | None,
    ready_timeout_s: float,
    host: str = HOST,
    extra_env: dict[str, str] | None = None,
) -> LocalServer:
    """start_server, then wait_ready. A server that exited on a port clash is started again
    (on a fresh port unless `port` is given), at most START_ATTEMPTS times in all; the log of
    each clash is kept beside (`server.clash1.log` ...). Any other failure, or the last clash,
    raises ServerStartError with the server stopped."""
    log_path = Path(log_path)
    for attempt in range(1, START_ATTEMPTS + 1):
        server = start_server(
            tag,
            bentoml_home=bentoml_home,
            log_path=log_path,
            cpus=cpus,
            port=port,
            host=host,
            extra_env=extra_env,
        )
        try:
            wait_ready(server, ready_timeout_s)
            return server
        except BaseException:
            stop_server(server)
            # The clash's traceback ends the log of a server that exited at once.
            clash = server.process.poll() is not None and PORT_CLASH in server.log_tail()
            if not clash or attempt == START_ATTEMPTS:
                raise
        kept = log_path.with_name(f"{log_path.stem}.clash{attempt}{log_path.suffix}")
        os.replace(log_path, kept)
        logging.getLogger("servebench.deploy").warning(
            "bentoml serve %s exited on a port clash (%s, log kept in %s): starting it again",
            tag,
            PORT_CLASH,
            kept,
        )
    raise AssertionError("unreachable")


def stop_server(server: LocalServer, grace_s: float = STOP_GRACE_S) -> list[int]:
    """Stop every process of the server: SIGTERM, then SIGKILL after `grace_s`.
    Returns the pids that had to be killed."""
    processes = server.processes()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(server.process.pid, signal.SIGTERM)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(processes, timeout=grace_s)
    alive += [p for p in server.processes() if p not in alive]
    killed = []
    if alive:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(server.process.pid, signal.SIGKILL)
        for process in alive:
            with contextlib.suppress(psutil.Error):
                process.kill()
                killed.append(process.pid)
        psutil.wait_procs(alive, timeout=5)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.process.wait(timeout=5)
    return killed


@contextlib.contextmanager
def local_server(
    tag: str,
    *,
    bentoml_home: str | Path,
    log_path: str | Path,
    cpus: Sequence[int] | None = None,
    port: int | None = None,
    host: str = HOST,
    ready_timeout_s: float = 300.0,
    extra_env: dict[str, str] | None = None,
) -> Iterator[LocalServer]:
    """A ready server for the duration of the block; stopped on exit, whatever happens."""
    with sigterm_raises():
        server = start_ready_server(
            tag,
            bentoml_home=bentoml_home,
            log_path=log_path,
            cpus=cpus,
            port=port,
            host=host,
            ready_timeout_s=ready_timeout_s,
            extra_env=extra_env,
        )
        try:
            yield server
        finally:
            stop_server(server)


class LocalDeployment:
    """The variant's `bentoml serve` for the duration of a job. A restart (kill-server with
    restart supervisor) replaces the server on the same port; the monitor follows it; every
    server started is stopped on the way out."""

    def __init__(self, target: LocalTarget, record: dict[str, Any], out_dir: Path) -> None:
        self.target = target
        self.record = record
        self.out_dir = out_dir
        self.servers: list[LocalServer] = []
        self.allowed_cpus = os.sched_getaffinity(0)  # of the job, before any thread is pinned
        self._monitor: Monitor | None = None

    @property
    def current(self) -> LocalServer:
        return self.servers[-1]

    @property
    def url(self) -> str:
        return self.current.url

    def alive(self) -> bool:
        """The current server's main process is running."""
        return self.current.process.poll() is None

    def start(self, port: int | None = None) -> LocalServer:
        name = SERVER_LOG if not self.servers else f"server.restart{len(self.servers)}.log"
        server = start_ready_server(
            self.record["tag"],
            bentoml_home=self.record["bentoml_home"],
            log_path=self.out_dir / name,
            cpus=self.target.cpus,
            port=port,
            ready_timeout_s=self.target.ready_timeout_s,
            extra_env=dict(self.target.environment),
        )
        self.servers.append(server)
        if self._monitor is not None:
            self._monitor.server = server
        return server

    def restart(self) -> LocalServer:
        """A fresh server on the same port; callable from a thread pinned to the generator's
        cores (the server is pinned to its own cores by start_server)."""
        pinned = os.sched_getaffinity(0)
        os.sched_setaffinity(0, self.allowed_cpus)
        try:
            return self.start(port=self.current.port)
        finally:
            os.sched_setaffinity(0, pinned)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                stop_server(server)

    @contextlib.contextmanager
    def monitored(self, out_dir: Path) -> Iterator[Monitor]:
        """server_metrics.csv and resources.csv of the current server (after a restart too)."""
        sampler = Monitor(self.current, out_dir).start()
        self._monitor = sampler
        try:
            yield sampler
        finally:
            self._monitor = None
            sampler.stop()


@contextlib.contextmanager
def local_deployment(
    target: LocalTarget, record: dict[str, Any], out_dir: Path
) -> Iterator[LocalDeployment]:
    """A ready LocalDeployment for the block; every server it started is stopped on exit."""
    deployment = LocalDeployment(target, record, out_dir)
    with sigterm_raises():
        try:
            deployment.start()
            yield deployment
        finally:
            deployment.stop_all()
