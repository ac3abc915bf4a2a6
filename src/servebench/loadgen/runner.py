"""Run one open-loop load test: schedule -> Locust subprocess(es) -> requests.parquet, summary.json.

Locust always runs as its own process (master + N workers on 127.0.0.1, or one standalone
process for N = 1), pinned to the generator's cores; this module never imports locust. With
`master_bind`, only the master runs here and N workers connect to it from other machines
(`servebench loadgen-worker`, `run_worker`); workers, local or not, get the plan from the master
and send their request logs back over Locust's message channel (servebench.loadgen.locustfile).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import psutil

from servebench import arrivals
from servebench import cpus as cpu_lists
from servebench.children import guarded
from servebench.layout import PLAN, RAW, REQUESTS, SUMMARY
from servebench.loadgen.probe import request_headers
from servebench.loadgen.summary import read_worker_logs, request_table, summarize
from servebench.net import LOOPBACK, free_port
from servebench.payloads import PayloadError, read_texts
from servebench.provenance import stable_hash, write_json
from servebench.records import RunSummary
from servebench.settings import LoadgenSettings
from servebench.slo import Gate

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEFAULT_BODY_TEMPLATE = '{"texts": ["{text}"]}'
TEXT_PLACEHOLDER = "{text}"
# Seconds between the start message and the first send: every worker must be waiting by then.
START_LEAD_S = {"standalone": 1.0, "distributed": 2.0}
# How long a master bound for remote workers (`master_bind`) waits for all of them to connect.
REMOTE_WORKERS_WAIT_S = 300
# Locust stops on its own at the end of the schedule; this bound only guards a hang.
RUN_TIME_MARGIN_S = 60.0


class LoadTestError(ValueError):
    """Bad input to a load test (payload file, template, cores): one readable line."""


def render_body(template: str, text: str) -> str:
    """The JSON body for one text: every "{text}" inside a string of `template` replaced."""
    try:
        parsed = json.loads(template)
    except json.JSONDecodeError as error:
        raise LoadTestError(f"the body template is not valid JSON: {error}") from None

    def fill(node: Any) -> Any:
        if isinstance(node, str):
            return node.replace(TEXT_PLACEHOLDER, text)
        if isinstance(node, list):
            return [fill(item) for item in node]
        if isinstance(node, dict):
            return {key: fill(value) for key, value in node.items()}
        return node

    return json.dumps(fill(parsed), ensure_ascii=False)


def parse_cpus(text: str | list[int] | None) -> list[int] | None:
    """`"1"`, `"1,3"`, `"2-5"` or a list -> sorted core numbers (None: not pinned)."""
    if text is None or text == "":
        return None
    if isinstance(text, (list, tuple)):
        return sorted({int(cpu) for cpu in text})
    try:
        return cpu_lists.parse_cpus(text)
    except ValueError as error:
        raise LoadTestError(f"--cpus: {error}") from None


def _check_cpus(cpu_list: list[int] | None) -> None:
    if cpu_list:
        try:
            cpu_lists.check_cpus(cpu_list)
        except ValueError as error:
            raise LoadTestError(str(error)) from None


def _locust_env() -> dict[str, str]:
    # LOCUST_* variables would silently change Locust's options: the plan decides, not them.
    env = {key: value for key, value in os.environ.items() if not key.startswith("LOCUST_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run_loadtest(
    *,
    host: str,
    out_dir: str | Path,
    seed: int,
    arrival: str,
    rate_rps: float | None = None,
    cv: float | None = None,
    shape: float | None = None,
    duration_s: float | None = None,
    requests: int | None = None,
    warmup_s: float = 0.0,
    stages: str | list[arrivals.Stage] | None = None,
    trace: str | Path | None = None,
    payloads: str | Path | None = None,
    generator: LoadgenSettings | None = None,
    method: str = "POST",
    body_template: str = DEFAULT_BODY_TEMPLATE,
    rejected_statuses: tuple[int, ...] = (429, 503),
    progress: bool = True,
    progress_interval_s: float | None = None,
    master_bind: tuple[str, int] | None = None,
    headers: dict[str, str] | None = None,
    gates: tuple[Gate, ...] = (),
    run_id: str | None = None,
    locust_reports: bool = True,
) -> RunSummary:
    """Send the seeded schedule to `host` + `endpoint` open loop; return the summary.

    `generator`: the generator's settings (endpoint, in-flight cap, overflow policy, timeout,
    workers, cores, validity rules); None takes the configuration schema's defaults.
    Writes into `out_dir`: requests.parquet, summary.json, plan.json (the schedule, payload
    order and settings), Locust's CSVs (locust_*.csv), HTML report and logs, and the raw
    per-worker logs under raw/. `progress`: a live line on stderr when it is a terminal, a
    line every few seconds otherwise (`progress_interval_s`). `headers`: sent with every
    request, over the JSON Content-Type of a request with a body. `gates`: SLO gates judged in
    the summary, with goodput (servebench.slo). `run_id`: this run's id (a new one when
    None), in plan.json, summary.json's settings and every status file of its workers: only
    those of this run are read (worker_statuses). `locust_reports=False`: no Locust CSVs and
    HTML report (nothing here reads them; the run ends ~2 s sooner, which adds up over the
    many short steps of a calibration).
    """
    out = Path(out_dir)
    generator = generator or LoadgenSettings.with_defaults()
    endpoint, workers, timeout_s = generator.endpoint, generator.workers, generator.timeout_s
    max_in_flight, overflow, validity = (
        generator.max_in_flight,
        generator.overflow,
        generator.validity,
    )
    cpus = list(generator.cpus)
    if workers < 1:
        raise LoadTestError(f"need at least one load generator worker, not {workers}")
    if max_in_flight < 1:
        raise LoadTestError(f"the in-flight cap must be at least 1, not {max_in_flight}")
    if overflow not in ("delay", "drop"):
        raise LoadTestError(f"overflow policy must be delay or drop, not {overflow!r}")
    if not (timeout_s > 0):
        raise LoadTestError(f"the request timeout must be positive, not {timeout_s}")
    if warmup_s < 0:
        raise LoadTestError(f"the warm-up must not be negative, not {warmup_s}")
    if not host.startswith(("http://", "https://")):
        raise LoadTestError(f"the host must be a URL like http://127.0.0.1:3000, not {host!r}")
    if not endpoint.startswith("/"):
        raise LoadTestError(f"the endpoint must start with '/', not {endpoint!r}")
    cpu_list = parse_cpus(cpus)
    _check_cpus(cpu_list)
    try:
        stage_list = arrivals.parse_stages(stages) if isinstance(stages, str) else stages
        schedule = arrivals.make_schedule(
            arrival,
            seed=seed,
            rate_rps=rate_rps,
            cv=cv,
            shape=shape,
            duration_s=duration_s,
            requests=requests,
            stages=stage_list,
            trace=trace,
        )
    except ValueError as error:
        raise LoadTestError(str(error)) from None
    if warmup_s >= schedule.horizon_s:
        raise LoadTestError(
            f"the warm-up ({warmup_s} s) must end before the run does ({schedule.horizon_s:.3g} s)"
        )
    if payloads is not None:
        try:
            texts = read_texts(payloads)
        except PayloadError as error:
            raise LoadTestError(str(error)) from None
        bodies = [render_body(body_template, text) for text in texts]
    elif method.upper() in ("GET", "HEAD", "DELETE"):
        texts, bodies = [""], [None]
    else:
        raise LoadTestError(f"a {method} load test needs a payload file (--payloads)")
    order = arrivals.payload_order(len(schedule), len(bodies), seed)
    run_id = run_id or uuid.uuid4().hex

    out.mkdir(parents=True, exist_ok=True)
    raw_dir = out / RAW
    if raw_dir.exists():
        shutil.rmtree(raw_dir)  # a rerun into the same folder starts from a clean log
    raw_dir.mkdir()
    for stale in (SUMMARY, REQUESTS):
        (out / stale).unlink(missing_ok=True)
    # master_bind: the master alone here, `workers` workers connecting from elsewhere.
    mode = "standalone" if workers == 1 and master_bind is None else "distributed"
    settings = {
        "run_id": run_id,
        "host": host,
        "endpoint": endpoint,
        "method": method.upper(),
        "body_template": body_template if payloads is not None else None,
        "payloads": str(payloads) if payloads is not None else None,
        "payload_count": len(texts),
        "payloads_hash": stable_hash(texts),
        "payload_order_hash": arrivals.hash_array(order),
        "workers": workers,
        "master_bind": f"{master_bind[0]}:{master_bind[1]}" if master_bind else None,
        "cpus": cpu_list,
        "max_in_flight": max_in_flight,
        "overflow": overflow,
        "timeout_s": timeout_s,
        "rejected_statuses": sorted(rejected_statuses),
        "warmup_s": warmup_s,
        # Names only: a header's value may be a secret (an API key), and settings are recorded.
        "header_names": sorted(headers or {}),
        "slo": [str(gate) for gate in gates],
    }
    plan = {
        **settings,
        "schedule": schedule.describe(),
        "log_dir": str(raw_dir.resolve()),
        "start_lead_s": START_LEAD_S[mode],
        "status_interval_s": 0.5,
        "locust_reports": locust_reports,
        "headers": request_headers(payloads is not None, headers),
        "bodies": bodies,
        "scheduled_s": schedule.scheduled_s.tolist(),
        "payload_index": order.tolist(),
    }
    plan_path = out / PLAN
    plan_path.write_text(json.dumps(plan))

    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    run_time_s = math.ceil(START_LEAD_S[mode] + schedule.horizon_s + timeout_s + RUN_TIME_MARGIN_S)
    reports_dir = _reports_scratch(out) if locust_reports else None
    try:
        processes = _start_locust(
            out, plan_path, host, workers, cpu_list, run_time_s, master_bind, reports_dir
        )
    except BaseException:
        if reports_dir is not None:
            _collect_reports(reports_dir, out)
        raise
    monitor = (
        ProgressMonitor(raw_dir, len(schedule), sys.stderr, progress_interval_s, run_id)
        if progress
        else None
    )
    interrupted = False
    exit_code: int | None = None
    # This thread watches the run from the generator's cores too, never from the server's.
    previous_affinity = os.sched_getaffinity(0)
    if cpu_list:
        os.sched_setaffinity(0, cpu_list)
    previous_sigterm = _sigterm_as_interrupt()
    try:
        # Remote workers may take their time to connect (the master waits for them).
        waits_s = REMOTE_WORKERS_WAIT_S if master_bind else 0.0
        exit_code = _wait(processes, monitor, deadline_s=run_time_s + 30.0 + waits_s)
    except KeyboardInterrupt:
        interrupted = True
        exit_code = _stop(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                _stop([process])
        if previous_sigterm is not None:
            signal.signal(signal.SIGTERM, previous_sigterm)
        if cpu_list:
            os.sched_setaffinity(0, previous_affinity)
        if monitor is not None:
            monitor.close()
        if reports_dir is not None:
            _collect_reports(reports_dir, out)

    if not interrupted and exit_code != 0 and not any(raw_dir.glob("requests_worker*.csv")):
        tail = (out / "locust.out").read_text(errors="replace").strip().splitlines()[-15:]
        raise LoadTestError(
            f"Locust did not run (exit code {exit_code}); the end of {out / 'locust.out'}:\n"
            + "\n".join(tail)
        )
    summary = finish(
        out,
        schedule,
        warmup_s=warmup_s,
        validity=validity or {},
        workers=workers,
        interrupted=interrupted,
        locust_exit_code=exit_code,
        gates=gates,
        run_id=run_id,
    )
    summary.schedule = schedule.describe()
    summary.settings = settings
    summary.started_at = started_at
    write_json(out / SUMMARY, summary.to_dict())
    if interrupted:
        raise KeyboardInterrupt
    return summary


def finish(
    out: Path,
    schedule: arrivals.Schedule,
    *,
    warmup_s: float,
    validity: dict[str, float],
    workers: int,
    interrupted: bool,
    locust_exit_code: int | None,
    gates: tuple[Gate, ...] = (),
    run_id: str | None = None,
) -> RunSummary:
    """Merge the per-worker logs into requests.parquet and compute the summary (with the
    status files of run `run_id` only; None: every one)."""
    raw_dir = out / RAW
    table = request_table(read_worker_logs(raw_dir), warmup_s)
    temporary = out / "requests.parquet.tmp"
    table.to_parquet(temporary, index=False)
    temporary.replace(out / REQUESTS)
    worker_results = [s for s in worker_statuses(raw_dir, run_id) if s.get("finished")]
    return summarize(
        table,
        schedule,
        warmup_s=warmup_s,
        validity=validity,
        worker_results=worker_results,
        workers=workers,
        interrupted=interrupted,
        locust_exit_code=locust_exit_code,
        gates=gates,
    )


def worker_statuses(raw_dir: Path, run_id: str | None) -> list[dict[str, Any]]:
    """The status files of the generator's workers of run `run_id` (None: of any run), worker
    order. A file another run's process wrote (it outlived its driver) is not this run's."""
    statuses = []
    for path in sorted(Path(raw_dir).glob("status_worker*.json")):
        try:
            status = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            continue  # being replaced
        if run_id is None or status.get("run_id") == run_id:
            statuses.append(status)
    return statuses


def _sigterm_as_interrupt() -> Any:
    """While Locust runs, SIGTERM (e.g. from Snakemake) stops it cleanly like Ctrl-C does:
    Locust runs in its own session, so it would otherwise outlive us."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    return signal.signal(signal.SIGTERM, interrupt)


REPORTS_SCRATCH_PREFIX = "servebench-locust-"  # + the driver's PID + "-"


def _reports_scratch(out: Path) -> Path:
    """Where Locust writes its reports while it runs: a folder in RAM (/dev/shm) where there
    is one, moved into `out` when it ends (_collect_reports). Locust rewrites and truncates
    its CSVs every second in the event loop's thread, and a file system call on disk can block
    that loop (so every send) for hundreds of ms; on tmpfs it does not wait for a disk."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK)):
        return out
    # Those of drivers that died without collecting them (SIGKILL) would hold RAM forever.
    for stale in shm.glob(f"{REPORTS_SCRATCH_PREFIX}*"):
        pid = stale.name.removeprefix(REPORTS_SCRATCH_PREFIX).split("-")[0]
        if pid.isdigit() and not psutil.pid_exists(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{REPORTS_SCRATCH_PREFIX}{os.getpid()}-", dir=shm))


def _collect_reports(reports_dir: Path, out: Path) -> None:
    if reports_dir == out:
        return
    for path in reports_dir.iterdir():
        shutil.move(path, out / path.name)
    reports_dir.rmdir()


def _start_locust(
    out: Path,
    plan_path: Path,
    host: str,
    workers: int,
    cpus: list[int] | None,
    run_time_s: int,
    master_bind: tuple[str, int] | None = None,
    reports_dir: Path | None = None,
) -> list[subprocess.Popen]:
    """Locust's processes; its reports (CSVs and HTML) into `reports_dir`, none without one."""
    env = _locust_env()
    env["SERVEBENCH_PLAN"] = str(plan_path.resolve())
    base = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--host", host]
    reports = []
    if reports_dir is not None:
        reports = [
            "--csv",
            str((reports_dir / "locust").resolve()),
            "--html",
            str((reports_dir / "locust_report.html").resolve()),
        ]
    run_options = [
        "--headless",
        "--run-time",
        f"{run_time_s}s",
        *reports,
        "--exit-code-on-error",
        "0",
        "--only-summary",
        "--stop-timeout",
        "0",
    ]

    def launch(
        command: list[str], name: str, cores: list[int] | None, own_plan: Path | None = None
    ) -> subprocess.Popen:
        """Locust in its own session; a worker in its own folder, with its own plan file."""
        command += ["--logfile", str((out / f"{name}.log").resolve()), "--loglevel", "INFO"]
        with (out / f"{name}.out").open("w", encoding="utf-8") as console:
            # Its own session: a Ctrl-C on the terminal reaches only us, and we stop Locust
            # cleanly (it then writes its reports). Pinned, and SIGKILLed by the kernel when
            # this thread's process dies without stopping it (SIGKILL, OOM): the launcher
            # (servebench.children) sets PR_SET_PDEATHSIG, with no preexec_fn.
            return subprocess.Popen(
                guarded(command, cpus=cores, death_signal=signal.SIGKILL),
                cwd=own_plan.parent if own_plan else out,
                env={**env, "SERVEBENCH_PLAN": str(own_plan)} if own_plan else env,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    if workers == 1 and master_bind is None:
        return [launch([*base, *run_options, "-u", "1", "-r", "1"], "locust", cpus)]
    bind_host, port = master_bind or (LOOPBACK, free_port())
    master = launch(
        [
            *base,
            *run_options,
            "--master",
            "--master-bind-host",
            bind_host,
            "--master-bind-port",
            str(port),
            "--expect-workers",
            str(workers),
            "--expect-workers-max-wait",
            str(REMOTE_WORKERS_WAIT_S if master_bind else 60),
            "-u",
            str(workers),
            "-r",
            str(workers),
        ],
        "locust",
        cpus,
    )
    processes = [master]
    if master_bind is not None:  # the workers run elsewhere: `servebench loadgen-worker`
        return processes
    for worker in range(workers):
        # One core per worker when there are enough, else all of the generator's cores.
        cores = [cpus[worker % len(cpus)]] if cpus and len(cpus) >= workers else cpus
        # A folder of its own, as on another machine: nothing is shared with the master by path.
        own_plan = worker_plan(out / RAW / f"worker{worker}")
        command = worker_command(LOOPBACK, port)
        processes.append(launch(command, f"locust_worker{worker}", cores, own_plan))
    return processes


def worker_plan(folder: Path) -> Path:
    """A worker's own plan file in `folder`: its log folder (a local copy of its request log)
    and placeholders until the master's plan arrives over the message channel."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / PLAN
    placeholders = {"max_in_flight": 1, "timeout_s": 1.0, "rejected_statuses": []}
    path.write_text(json.dumps({"log_dir": str(folder.resolve()), **placeholders}))
    return path


def worker_command(master_host: str, master_port: int) -> list[str]:
    """A Locust worker of this locustfile connecting to the master at master_host:master_port."""
    return [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker",
        "--master-host", master_host, "--master-port", str(master_port), "--headless",
    ]  # fmt: skip


def run_worker(
    master_host: str,
    master_port: int,
    cpus: list[int] | None = None,
    folder: Path | None = None,
) -> int:
    """One worker of a distributed load test whose master runs elsewhere (`servebench loadtest
    --workers-expected N --master-bind HOST:PORT`): Locust's worker in a folder of its own (a
    temporary one unless `folder`), pinned to `cpus`, until the master ends the test. It gets
    the plan from the master and sends its request log back: no file is shared. Returns
    Locust's exit status."""
    import tempfile

    cpu_list = parse_cpus(cpus)
    _check_cpus(cpu_list)
    with tempfile.TemporaryDirectory(prefix="servebench-worker-") as temporary:
        here = Path(folder or temporary)
        own_plan = worker_plan(here)
        command = worker_command(master_host, master_port)
        command += ["--logfile", str(here / "locust_worker.log"), "--loglevel", "INFO"]
        if cpu_list:
            command = ["taskset", "-c", ",".join(map(str, cpu_list)), *command]
        env = {**_locust_env(), "SERVEBENCH_PLAN": str(own_plan)}
        process = subprocess.Popen(command, cwd=here, env=env, start_new_session=True)
        try:
            return process.wait()
        except KeyboardInterrupt:
            _stop([process])
            raise


def _wait(
    processes: list[subprocess.Popen], monitor: ProgressMonitor | None, deadline_s: float
) -> int | None:
    """Wait for the master (or standalone) process; the others follow it."""
    start = time.monotonic()
    master = processes[0]
    while master.poll() is None:
        if monitor is not None:
            monitor.update()
        if time.monotonic() - start > deadline_s:
            print("servebench loadtest: Locust did not stop in time; stopping it", file=sys.stderr)
            _stop(processes)
            return None
        time.sleep(0.2)
        if any(p.poll() not in (None, 0) for p in processes[1:]) and master.poll() is None:
            # A worker died: the master would wait for it until the run time ends.
            _stop(processes)
            break
    for process in processes[1:]:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _stop([process])
    if monitor is not None:
        monitor.update(final=True)
    return master.returncode


def _stop(processes: list[subprocess.Popen]) -> int | None:
    """SIGINT (Locust then writes its reports), then SIGTERM, then SIGKILL."""
    for sig, grace in ((signal.SIGINT, 10), (signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        for process in processes:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    pass
        end = time.monotonic() + grace
        while time.monotonic() < end and any(p.poll() is None for p in processes):
            time.sleep(0.1)
        if all(p.poll() is not None for p in processes):
            break
    return processes[0].returncode if processes else None


class ProgressMonitor:
    """sent/planned, achieved rate and the p99 of recent latencies, from the workers' files.

    On a terminal one line redrawn twice a second; otherwise (workflow logs) a line every
    `interval_s` seconds (5 by default).
    """

    def __init__(
        self,
        raw_dir: Path,
        planned: int,
        stream: TextIO,
        interval_s: float | None = None,
        run_id: str | None = None,
    ) -> None:
        self.raw_dir = raw_dir
        self.run_id = run_id
        self.planned = planned
        self.stream = stream
        self.tty = stream.isatty()
        self.interval_s = interval_s if interval_s is not None else (0.5 if self.tty else 5.0)
        self.last_shown = 0.0
        self.offsets: dict[Path, int] = {}
        self.recent: deque[tuple[float, float]] = deque()  # (done_s, latency_ms)
        self.shown_any = False

    def _read_new_rows(self) -> None:
        for path in self.raw_dir.glob("requests_worker*.csv"):
            offset = self.offsets.get(path, 0)
            with path.open("rb") as file:
                file.seek(offset)
                chunk = file.read()
            complete = chunk.rfind(b"\n") + 1
            self.offsets[path] = offset + complete
            for line in chunk[:complete].decode("utf-8", "replace").splitlines():
                fields = line.split(",")
                try:
                    scheduled, done = float(fields[3]), float(fields[5])
                except (ValueError, IndexError):
                    continue  # header, dropped request, or a text field with commas
                self.recent.append((done, (done - scheduled) * 1000.0))

    def line(self) -> str | None:
        statuses = worker_statuses(self.raw_dir, self.run_id)
        if not statuses:
            return None
        self._read_new_rows()
        sent = sum(s.get("sent", 0) for s in statuses)
        dropped = sum(s.get("dropped", 0) for s in statuses)
        elapsed = max(s.get("updated_s", 0.0) for s in statuses)
        while self.recent and self.recent[0][0] < elapsed - 5.0:
            self.recent.popleft()
        p99 = np.percentile([lat for _, lat in self.recent], 99) if self.recent else math.nan
        rate = sent / elapsed if elapsed > 0 else 0.0
        text = (
            f"sent {sent}/{self.planned} ({100 * sent / max(self.planned, 1):.0f}%)  "
            f"achieved {rate:.1f} req/s  p99 {p99:.1f} ms (last 5 s)"
        )
        return text + (f"  dropped {dropped}" if dropped else "")

    def update(self, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self.last_shown < self.interval_s:
            return
        self.last_shown = now
        text = self.line()
        if text is None:
            return
        self.shown_any = True
        if self.tty:
            self.stream.write("\r\x1b[2K" + text)
        else:
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.shown_any:
            self.stream.write("\n")
            self.stream.flush()
