"""Health probes during a resilience run: /readyz and /livez polled once a second (probes.csv)."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import pandas as pd

from servebench.deploy.local import (
    http_get,
)

PROBE_COLUMNS = ("wall_s", "t_s", "path", "status", "ok", "response_ms")
PROBE_PATHS = ("/readyz", "/livez")


PROBE_TIMEOUT_S = 1.0


class Prober:
    """GET /readyz and /livez once per `interval_s` (each in a thread of its own, so a hung
    server does not delay the other probe); rows kept in memory, written by `write`."""

    def __init__(
        self,
        url_of: Callable[[], str],
        interval_s: float = 1.0,
        cpus: Sequence[int] | None = None,
    ) -> None:
        self.url_of = url_of
        self.interval_s = interval_s
        self.cpus = list(cpus or [])
        self.rows: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(path,), name=f"probe{path}", daemon=True)
            for path in PROBE_PATHS
        ]

    def start(self) -> Prober:
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=5)

    def _run(self, path: str) -> None:
        if self.cpus:  # never on the server's cores (Linux: this thread only)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        next_at = time.monotonic()
        while not self._stop.is_set():
            sent = time.time()
            status, _ = http_get(self.url_of() + path, timeout_s=PROBE_TIMEOUT_S)
            row = {
                "wall_s": round(sent, 4),
                "path": path,
                "status": status,
                "ok": status == 200,
                "response_ms": round((time.time() - sent) * 1000.0, 2),
            }
            with self._lock:
                self.rows.append(row)
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    def frame(self, t0_wall: float | None) -> pd.DataFrame:
        with self._lock:
            frame = pd.DataFrame(
                self.rows, columns=["wall_s", "path", "status", "ok", "response_ms"]
            )
        frame.insert(1, "t_s", frame["wall_s"] - t0_wall if t0_wall is not None else math.nan)
        return frame.sort_values(["wall_s", "path"]).reset_index(drop=True)
