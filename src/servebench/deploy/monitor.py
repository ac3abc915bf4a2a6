"""Monitoring of a running server: /metrics scraped and the server's CPU and RSS sampled once a
second into server_metrics.csv and resources.csv (the K3s target samples `kubectl top` instead).

    with monitor(server, run_dir):   # any server with `.url` and `.processes()`
        ...
"""

from __future__ import annotations

import contextlib
import csv
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psutil

from servebench.layout import RESOURCES, SERVER_METRICS
from servebench.net import http_get

# Prometheus families kept in server_metrics.csv (process CPU/RSS come from psutil instead).
METRIC_PREFIXES = ("bentoml_", "servebench_")


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

    def __init__(self, server: Any, out_dir: str | Path, interval_s: float = 1.0) -> None:
        self.server = server
        self.out_dir = Path(out_dir)
        self.interval_s = interval_s
        self.metrics_path = self.out_dir / SERVER_METRICS
        self.resources_path = self.out_dir / RESOURCES
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
def monitor(server: Any, out_dir: str | Path, interval_s: float = 1.0) -> Iterator[Monitor]:
    """server_metrics.csv (scraped /metrics) and resources.csv (CPU%, RSS) in `out_dir`."""
    sampler = Monitor(server, out_dir, interval_s).start()
    try:
        yield sampler
    finally:
        sampler.stop()
