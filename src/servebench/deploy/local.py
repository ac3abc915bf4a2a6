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
`finally` (SIGKILL), the kernel sends the server SIGTERM (PR_SET_PDEATHSIG) and the service
does the same for its workers.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import ctypes
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from servebench.cpus import check_cpus, parse_cpus

HOST = "127.0.0.1"
READY_POLL_S = 0.25
STOP_GRACE_S = 15.0
LOG_TAIL_LINES = 40
PR_SET_PDEATHSIG = 1
# Prometheus families kept in server_metrics.csv (process CPU/RSS come from psutil instead).
METRIC_PREFIXES = ("bentoml_",)


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


def free_port(host: str = HOST) -> int:
    """A TCP port that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _child_setup(cpus: list[int]) -> Any:
    """preexec_fn of the server: pin it, and have the kernel SIGTERM it when we die."""

    def setup() -> None:
        if cpus:
            os.sched_setaffinity(0, cpus)
        with contextlib.suppress(Exception):
            libc = ctypes.CDLL("libc.so.6", use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)

    return setup


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While a server runs, SIGTERM/SIGHUP raise Terminated so that `finally` blocks run."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous: dict[int, Any] = {}

    def handler(signum: int, _frame: Any) -> None:
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


def server_env(bentoml_home: str | Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
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


def bentoml_exe() -> str:
    candidate = Path(sys.executable).parent / "bentoml"
    return str(candidate) if candidate.exists() else "bentoml"


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
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    command = [bentoml_exe(), "serve", tag, "--host", host, "--port", str(port)]
    with log_path.open("w", encoding="utf-8") as log:
        log.write(f"# {' '.join(command)}  (cpus {cores or 'all'})\n")
        log.flush()
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=server_env(bentoml_home, extra_env),
            start_new_session=True,
            preexec_fn=_child_setup(cores),
        )
    return LocalServer(
        tag=tag, host=host, port=port, cpus=cores, log_path=log_path, process=process
    )


def http_get(url: str, timeout_s: float = 2.0) -> tuple[int, bytes]:
    """(status, body) of a GET; status 0 when the server cannot be reached."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()
    except (urllib.error.URLError, OSError):
        return 0, b""


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
            return time.monotonic() - started
        if time.monotonic() - started > timeout_s:
            raise ServerStartError(
                f"bentoml serve {server.tag} was not ready after {timeout_s:.0f} s "
                f"(GET /readyz: {status or 'no answer'}); last lines of {server.log_path}:\n"
                f"{server.log_tail()}"
            )
        time.sleep(READY_POLL_S)


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
    with _sigterm_raises():
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
            yield server
        finally:
            stop_server(server)


# ------------------------------------------------------------------------------- monitoring


def parse_metrics(
    text: str, prefixes: Sequence[str] = METRIC_PREFIXES
) -> list[tuple[str, str, float]]:
    """(sample name, labels as k=v;k=v, value) of the Prometheus text exposition."""
    from prometheus_client.parser import text_string_to_metric_families

    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if not sample.name.startswith(tuple(prefixes)):
                continue
            labels = ";".join(f"{key}={value}" for key, value in sorted(sample.labels.items()))
            rows.append((sample.name, labels, float(sample.value)))
    return rows


class Monitor:
    """Samples /metrics and the server's CPU and RSS every `interval_s` in a thread."""

    METRICS_HEADER = ("timestamp_s", "elapsed_s", "metric", "labels", "value")
    RESOURCES_HEADER = (
        "timestamp_s",
        "elapsed_s",
        "n_processes",
        "cpu_percent",
        "rss_bytes",
        "max_process_rss_bytes",
    )

    def __init__(self, server: LocalServer, out_dir: str | Path, interval_s: float = 1.0) -> None:
        self.server = server
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.metrics_path = self.out_dir / "server_metrics.csv"
        self.resources_path = self.out_dir / "resources.csv"
        self.samples = 0
        self.scrape_failures = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="server-monitor", daemon=True)
        self._cpu_probes: dict[int, psutil.Process] = {}
        self._started = 0.0

    def start(self) -> Monitor:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._started = time.time()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        with (
            self.metrics_path.open("w", newline="", encoding="utf-8") as metrics_file,
            self.resources_path.open("w", newline="", encoding="utf-8") as resources_file,
        ):
            metrics = csv.writer(metrics_file)
            resources = csv.writer(resources_file)
            metrics.writerow(self.METRICS_HEADER)
            resources.writerow(self.RESOURCES_HEADER)
            self._sample_resources()  # primes cpu_percent
            next_at = time.monotonic()
            while True:
                self.sample_once(metrics, resources)
                metrics_file.flush()
                resources_file.flush()
                next_at += self.interval_s
                if self._stop.wait(max(0.0, next_at - time.monotonic())):
                    self.sample_once(metrics, resources)  # the state at the end of the run
                    break

    def sample_once(self, metrics: Any, resources: Any) -> None:
        now = time.time()
        elapsed = round(now - self._started, 3)
        n, cpu, rss, max_rss = self._sample_resources()
        resources.writerow((round(now, 3), elapsed, n, round(cpu, 1), rss, max_rss))
        status, body = http_get(self.server.url + "/metrics", timeout_s=2.0)
        if status == 200:
            for name, labels, value in parse_metrics(body.decode("utf-8", errors="replace")):
                metrics.writerow((round(now, 3), elapsed, name, labels, value))
        else:
            self.scrape_failures += 1
        self.samples += 1

    def _sample_resources(self) -> tuple[int, float, int, int]:
        cpu = 0.0
        rss = 0
        max_rss = 0
        processes = self.server.processes()
        for process in processes:
            probe = self._cpu_probes.setdefault(process.pid, process)
            try:
                cpu += probe.cpu_percent(None)
                process_rss = probe.memory_info().rss
            except psutil.Error:
                continue
            rss += process_rss
            max_rss = max(max_rss, process_rss)
        return len(processes), cpu, rss, max_rss


@contextlib.contextmanager
def monitor(server: LocalServer, out_dir: str | Path, interval_s: float = 1.0) -> Iterator[Monitor]:
    """server_metrics.csv (scraped /metrics) and resources.csv (CPU%, RSS) in `out_dir`."""
    sampler = Monitor(server, out_dir, interval_s).start()
    try:
        yield sampler
    finally:
        sampler.stop()


# ------------------------------------------------------------------------------ the command


def _serve(args: argparse.Namespace) -> int:
    from servebench.cli import UserError
    from servebench.config import ConfigError, load_config

    try:
        config = load_config(*args.configfile)
    except ConfigError as error:
        raise UserError(str(error)) from None
    if args.variant not in config.get("variants", {}):
        known = ", ".join(sorted(config.get("variants", {})))
        raise UserError(f"no variant named {args.variant!r} (known: {known})")
    record_path = args.bento_json or Path(config["results_dir"], "bentos", f"{args.variant}.json")
    if not record_path.is_file():
        raise UserError(
            f"{record_path}: no Bento built for variant {args.variant!r}; build it with "
            f"`snakemake --cores 2 {record_path}`"
        )
    record = json.loads(record_path.read_text(encoding="utf-8"))
    try:
        cpus = parse_cpus(args.cpus) if args.cpus else list(config["cpus"]["server"])
        cpus = check_cpus(cpus)
    except ValueError as error:
        raise UserError(str(error)) from None
    log_path = args.log or Path(config["results_dir"], "serve", f"{args.variant}.log")
    ready_timeout_s = float(config.get("deploy", {}).get("ready_timeout_s", 300))
    print(f"starting {record['tag']} on cores {cpus} (log: {log_path}) ...", flush=True)
    try:
        with local_server(
            record["tag"],
            bentoml_home=record["bentoml_home"],
            log_path=log_path,
            cpus=cpus,
            port=args.port,
            ready_timeout_s=ready_timeout_s,
        ) as server:
            with contextlib.ExitStack() as stack:
                if args.monitor:
                    stack.enter_context(monitor(server, args.monitor))
                print(
                    f"variant {args.variant} ready at {server.url}\n"
                    f"  curl -X POST {server.url}/classify -H 'Content-Type: application/json' "
                    '-d \'{"text": "what a lovely day"}\'\n'
                    "Ctrl-C stops it.",
                    flush=True,
                )
                while server.process.poll() is None:
                    time.sleep(0.5)
                raise UserError(
                    f"the server exited with code {server.process.returncode}; last lines of "
                    f"{log_path}:\n{server.log_tail()}"
                )
    except ServerStartError as error:
        raise UserError(str(error)) from None
    except Terminated:
        print("servebench serve: terminated, server stopped", file=sys.stderr)
        return 143


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve one variant's Bento locally (127.0.0.1, pinned to the server cores) "
        "until Ctrl-C",
    )
    parser.add_argument("--variant", required=True, help="variant name from the config")
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    parser.add_argument(
        "--cpus", default=None, help="server cores, e.g. 0 or 0-1 (default: config cpus.server)"
    )
    parser.add_argument(
        "--configfile",
        action="append",
        default=[],
        type=Path,
        help="config file merged over config/config.yaml (repeatable), as for snakemake",
    )
    parser.add_argument(
        "--bento-json",
        type=Path,
        default=None,
        help="the Bento record (default: <results_dir>/bentos/<variant>.json)",
    )
    parser.add_argument("--log", type=Path, default=None, help="server log file")
    parser.add_argument(
        "--monitor",
        type=Path,
        default=None,
        help="folder for server_metrics.csv and resources.csv, sampled once a second",
    )
    parser.set_defaults(func=_serve)
