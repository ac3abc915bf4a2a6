"""The external target: a server that already runs, at the variant's URL (deploy.external.urls).

    with external_deployment(target, out_dir) as deployment:   # ready: GET ready_path is 200
        with deployment.monitored(out_dir):                      # /metrics, when it has one
            ... send load to deployment.url ...

Nothing is built, started, stopped or pinned: the server is someone else's. What a job can see
of it is what its URL answers: readiness (deploy.external.ready_path) before the job, whether
it still answers (`alive`), and its Prometheus /metrics once a second into server_metrics.csv
when the endpoint has one. resources.csv keeps its header only, since the server's processes
are not on this machine; `notes` says so, and says when /metrics was not there (the jobs copy
the notes into meta.json).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servebench.deploy.local import READY_POLL_S, ServerStartError
from servebench.deploy.monitor import Monitor, parse_metrics
from servebench.layout import SERVER_LOG
from servebench.net import http_get
from servebench.settings import ExternalTarget

# How long `alive` waits for an answer from a server that may still be draining a queue.
ALIVE_TIMEOUT_S = 5.0
RESOURCES_NOTE = (
    "resources.csv is empty: the external server's processes are not on this machine "
    "(their CPU and memory are not measured)"
)


class EndpointMonitor(Monitor):
    """The Monitor's /metrics scrape without the process sampling: server_metrics.csv from the
    endpoint's /metrics (when it has one), resources.csv with its header only."""

    def __init__(self, url: str, out_dir: str | Path, interval_s: float = 1.0) -> None:
        super().__init__(_Endpoint(url), out_dir, interval_s)
        self.scraped = 0
        self.last_status = 0

    def _sample_resources(self) -> tuple[int, float, int, int]:
        return 0, 0.0, 0, 0

    def sample_once(self, metrics: Any, resources: Any) -> None:
        now = time.time()
        elapsed = round(now - self._started, 3)
        status, body = http_get(self.server.url + "/metrics", timeout_s=2.0)
        self.last_status = status
        if status == 200:
            self.scraped += 1
            for name, labels, value in parse_metrics(body.decode("utf-8", errors="replace")):
                metrics.writerow((round(now, 3), elapsed, name, labels, value))
        else:
            self.scrape_failures += 1
        self.samples += 1

    def notes(self) -> list[str]:
        notes = [RESOURCES_NOTE]
        if self.samples and not self.scraped:
            answer = f"HTTP {self.last_status}" if self.last_status else "no answer"
            notes.append(
                f"server_metrics.csv is empty: {self.server.url}/metrics answered {answer} "
                f"({self.samples} tries)"
            )
        return notes


class _Endpoint:
    """What the Monitor needs of a server: its URL (and no processes of this machine)."""

    def __init__(self, url: str) -> None:
        self.url = url

    def processes(self) -> list[Any]:
        return []


class ExternalDeployment:
    """A variant served at a URL: the same surface as the local and K3s deployments."""

    def __init__(self, target: ExternalTarget, out_dir: Path) -> None:
        if not target.url:
            raise ServerStartError("deploy.target external: this variant has no URL")
        self.target = target
        self.out_dir = Path(out_dir)
        self.notes: list[str] = []

    @property
    def url(self) -> str:
        return self.target.url.rstrip("/")

    def alive(self) -> bool:
        """The server still answers (any HTTP status) its ready path, or / without one."""
        status, _ = http_get(self.url + (self.target.ready_path or "/"), timeout_s=ALIVE_TIMEOUT_S)
        return status != 0

    def wait_ready(self) -> float:
        """Block until GET ready_path answers 200 (no check without one); the seconds it took."""
        started = time.monotonic()
        if not self.target.ready_path:
            return 0.0
        while True:
            status, _ = http_get(self.url + self.target.ready_path, timeout_s=1.0)
            if status == 200:
                return time.monotonic() - started
            if time.monotonic() - started > self.target.ready_timeout_s:
                raise ServerStartError(
                    f"the external server {self.url} was not ready after "
                    f"{self.target.ready_timeout_s:.0f} s (GET {self.target.ready_path}: "
                    f'{status or "no answer"}; deploy.external.ready_path, "" for no check)'
                )
            time.sleep(READY_POLL_S)

    @contextlib.contextmanager
    def monitored(self, out_dir: Path) -> Iterator[EndpointMonitor]:
        sampler = EndpointMonitor(self.url, out_dir).start()
        try:
            yield sampler
        finally:
            sampler.stop()
            self.notes += [note for note in sampler.notes() if note not in self.notes]


@contextlib.contextmanager
def external_deployment(target: ExternalTarget, out_dir: Path) -> Iterator[ExternalDeployment]:
    """The variant's server, once it is ready; left running on the way out (it is not ours)."""
    deployment = ExternalDeployment(target, out_dir)
    waited_s = deployment.wait_ready()
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    # In place of the server's own log (which is not here): where the server was.
    (Path(out_dir) / SERVER_LOG).write_text(
        f"# external server {deployment.url} (deploy.target external): not started by "
        f"servebench, its log is not here; ready after {waited_s:.1f} s\n",
        encoding="utf-8",
    )
    yield deployment
