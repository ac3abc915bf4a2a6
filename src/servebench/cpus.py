"""CPU cores: parse lists like `0`, `0,2`, `0-3`, `0-1,4` and check them against this
process's cores (server and load generator are pinned to different cores; each caller turns
the ValueError into its own error type), and measure what else used the measured cores.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator, Sequence

import psutil


def parse_cpus(text: str) -> list[int]:
    """`0`, `0,2`, `0-3`, `0-1,4` -> sorted core numbers (ValueError on anything else)."""
    cores: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(value) for value in part.split("-", 1))
                if first > last:
                    raise ValueError
                cores.update(range(first, last + 1))
            else:
                cores.add(int(part))
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}: use e.g. 0 or 0,2 or 0-3") from None
    if not cores or min(cores) < 0:
        raise ValueError(f"bad CPU list {text!r}: use e.g. 0 or 0,2 or 0-3")
    return sorted(cores)


def check_cpus(cpus: Sequence[int]) -> list[int]:
    """The cores, sorted, after checking that this process may run on them (ValueError if not)."""
    available = sorted(os.sched_getaffinity(0))
    missing = sorted(set(cpus) - set(available))
    if missing:
        raise ValueError(f"CPU cores {missing} are not available here (available: {available})")
    return sorted(set(cpus))


AUTO = "auto"


def usable_cpus() -> list[int]:
    """The cores this process may run on (its affinity: taskset, cgroups' cpusets)."""
    return sorted(os.sched_getaffinity(0))


def assign_cpus(
    server: str | Sequence[int], loadgen: str | Sequence[int], usable: Sequence[int]
) -> tuple[list[int], list[int]]:
    """`cpus.server` and `cpus.loadgen` as core lists: `auto` for the load generator is the
    last usable core the server's list leaves free; `auto` for the server is every usable core
    but the generator's (empty when none is left: cpu_problems says so). Lists stay as given."""
    usable = sorted(set(usable))
    if loadgen == AUTO:
        taken = set() if server == AUTO else set(server)
        free = [core for core in usable if core not in taken]
        loadgen_cores = free[-1:]
    else:
        loadgen_cores = sorted(set(loadgen))
    if server == AUTO:
        server_cores = [core for core in usable if core not in loadgen_cores]
    else:
        server_cores = sorted(set(server))
    return server_cores, loadgen_cores


def cpu_problems(
    server: str | Sequence[int],
    loadgen: str | Sequence[int],
    usable: Sequence[int],
    *,
    server_runs_here: bool = True,
) -> list[str]:
    """What is wrong with `cpus.server` / `cpus.loadgen` on this machine, one line each (empty:
    nothing): cores this process may not use, cores shared, an `auto` left without a core.
    `server_runs_here`: False when no server is pinned here (a cluster target, or a command
    that only loads an endpoint), so the server's cores need not exist."""
    server_cores, loadgen_cores = assign_cpus(server, loadgen, usable)
    problems = []
    for name, given, cores in (
        ("server", server, server_cores),
        ("loadgen", loadgen, loadgen_cores),
    ):
        if name == "server" and not server_runs_here:
            continue
        missing = sorted(set(cores) - set(usable))
        if missing:
            problems.append(
                f"'cpus.{name}': cores {missing} are not available to this process "
                f"(it may use {sorted(usable)})"
            )
        if not cores:
            other = "cpus.loadgen" if name == "server" else "cpus.server"
            problems.append(
                f"'cpus.{name}': {given} leaves no core: this process may use only "
                f"{sorted(usable)} and {other} takes them; set both lists, disjoint"
            )
    shared = sorted(set(server_cores) & set(loadgen_cores))
    if shared and server_runs_here:
        problems.append(f"'cpus': server and loadgen share cores {shared}; they must be disjoint")
    return problems


def _busy_jiffies(cores: Sequence[int]) -> int:
    """Busy time (user, nice, system, irq, softirq, steal) of `cores` since boot, in ticks."""
    busy = 0
    wanted = {f"cpu{core}" for core in cores}
    with open("/proc/stat", encoding="ascii") as stat:
        for line in stat:
            fields = line.split()
            if fields and fields[0] in wanted:
                user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
                busy += user + nice + system + irq + softirq + steal
    return busy


# CPU-time counters of processes that belong to this job without being its descendants (a
# container's, started by the Docker daemon): ForeignCpu counts them as the job's own.
_ADOPTED: dict[int, Callable[[], float]] = {}
_ADOPTED_LOCK = threading.Lock()


@contextlib.contextmanager
def adopt_cpu(cpu_s: Callable[[], float]) -> Iterator[None]:
    """While the block runs, `cpu_s()` (CPU seconds used so far, never decreasing) counts as this
    process's own in every ForeignCpu: the deployment of a job whose server is not its child
    (servebench.deploy.docker) adopts the server's CPU time this way."""
    with _ADOPTED_LOCK:
        _ADOPTED[id(cpu_s)] = cpu_s
    try:
        yield
    finally:
        with _ADOPTED_LOCK:
            _ADOPTED.pop(id(cpu_s), None)


class ForeignCpu:
    """How much of `cores` something else than this process and its descendants used during a
    block: busy time of the cores (/proc/stat) minus the CPU time of our own processes (this
    one, the server and the load generator it started, and what a deployment adopted with
    `adopt_cpu`: a container's processes), sampled every `interval_s`.

    A measurement owns the machine; this is what tells a run that it did not. Our processes
    that run on other cores are counted as ours too, so the figure errs low, never high.
    """

    def __init__(self, cores: Sequence[int], interval_s: float = 0.5) -> None:
        self.cores = sorted(set(cores))
        self.interval_s = interval_s
        self._own: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="foreign-cpu", daemon=True)
        self._ticks_per_s = os.sysconf("SC_CLK_TCK")

    def _sample(self) -> None:
        me = psutil.Process()
        try:
            processes = [me, *me.children(recursive=True)]
        except psutil.Error:
            processes = [me]
        for process in processes:
            with contextlib.suppress(psutil.Error):
                times = process.cpu_times()
                used = times.user + times.system
                self._own[process.pid] = max(self._own.get(process.pid, 0.0), used)
        with _ADOPTED_LOCK:
            adopted = list(_ADOPTED.items())
        for key, cpu_s in adopted:
            # Keyed below every pid: a counter is never mistaken for a process.
            with contextlib.suppress(Exception):
                self._own[-1 - key] = max(self._own.get(-1 - key, 0.0), float(cpu_s()))

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._sample()

    def __enter__(self) -> ForeignCpu:
        self._sample()
        self._own_start = sum(self._own.values())
        self._busy_start = _busy_jiffies(self.cores)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()
        window_s = time.monotonic() - self._started
        busy_s = (_busy_jiffies(self.cores) - self._busy_start) / self._ticks_per_s
        own_s = sum(self._own.values()) - self._own_start
        self.window_s = window_s
        self.foreign_cpu_s = max(0.0, busy_s - own_s)
        capacity_s = window_s * len(self.cores)
        self.percent = 100.0 * self.foreign_cpu_s / capacity_s if capacity_s > 0 else 0.0
