"""Deployment targets: where a variant's Bento runs for the duration of a job.

    with deployed(target, bento_record, run_dir) as deployment:   # ready when the block starts
        with deployment.monitored(run_dir):                         # server_metrics, resources
            ... send load to deployment.url ...

`target` is the job's typed settings (servebench.settings.LocalTarget or K3sTarget); the
deployment is torn down on the way out, on SIGTERM too (Snakemake stopping a job). Every
target gives the same `Deployment` surface; the faults of a target act on its own deployment
(`deployment.current`: the local server; `deployment.server`: the K3s one).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from servebench.settings import DeployTarget, K3sTarget


class Deployment(Protocol):
    @property
    def url(self) -> str: ...

    def alive(self) -> bool: ...

    def monitored(self, out_dir: Path) -> contextlib.AbstractContextManager[Any]: ...


@contextlib.contextmanager
def deployed(target: DeployTarget, record: dict[str, Any], out_dir: Path) -> Iterator[Any]:
    """The variant of the Bento `record` deployed on `target` for the block."""
    from servebench.deploy.local import local_deployment, sigterm_raises

    with sigterm_raises():
        if isinstance(target, K3sTarget):
            from servebench.deploy.k3s.driver import k3s_deployment

            with k3s_deployment(target, record, out_dir) as deployment:
                yield deployment
        else:
            with local_deployment(target, record, out_dir) as deployment:
                yield deployment
