"""Deployment targets: where a variant's Bento runs for the duration of a job.

    with deployed(target, bento_record, run_dir) as deployment:   # ready when the block starts
        with deployment.monitored(run_dir):                         # server_metrics, resources
            ... send load to deployment.url ...

`target` is the job's typed settings (servebench.settings.LocalTarget, K3sTarget or
DockerTarget); the deployment is torn down on the way out, on SIGTERM too (Snakemake stopping a
job). Every target gives the same `Deployment` surface; the faults of a target act on its own
deployment (`deployment.current`: the local server; `deployment.server`: the K3s one or the
docker target's container).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

from servebench.settings import DeployTarget, DockerTarget, K3sTarget


class Deployment(Protocol):
    @property
    def url(self) -> str: ...

    def alive(self) -> bool: ...

    def monitored(self, out_dir: Path) -> contextlib.AbstractContextManager[Any]: ...


@contextlib.contextmanager
def deployed(target: DeployTarget, record: dict[str, Any], out_dir: Path) -> Iterator[Any]:
    """The variant of the Bento `record` deployed on `target` for the block."""
    if target.name == "external":  # already running elsewhere: nothing to start or stop
        from servebench.deploy.external import external_deployment

        with external_deployment(target, out_dir) as deployment:  # type: ignore[arg-type]
            yield deployment
        return
    from servebench.deploy.local import local_deployment, sigterm_raises

    with sigterm_raises():
        if isinstance(target, K3sTarget):
            from servebench.deploy.k3s.driver import k3s_deployment

            with k3s_deployment(target, record, out_dir) as deployment:
                yield deployment
        elif isinstance(target, DockerTarget):
            from servebench.deploy.docker import docker_deployment

            with docker_deployment(target, record, out_dir) as deployment:
                yield deployment
        else:
            with local_deployment(target, record, out_dir) as deployment:
                yield deployment
