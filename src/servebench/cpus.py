"""CPU cores: parse lists like `0`, `0,2`, `0-3`, `0-1,4` and check them against this
process's cores (server and load generator are pinned to different cores; each caller turns
the ValueError into its own error type), and measure what else used the measured cores.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Sequence

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


class ForeignCpu:
    """How much of `cores` something else than this process and its descendants used during a
    block: busy time of the cores (/proc/stat) minus the CPU time of our own processes (this
    one, the server and the load generator it started), sampled every `interval_s`.

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
