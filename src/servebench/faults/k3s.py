"""The K3s target's faults: the K3s driver's commands (docs/k3s.md), run on the run's K3sServer."""

from __future__ import annotations

from typing import Any

from servebench.deploy.k3s.driver import inject_fault
from servebench.fault_kinds import faults_of
from servebench.faults import FaultContext, register_injector


def _injector(kind: str) -> Any:
    def inject(context: FaultContext) -> dict[str, Any]:
        facts = inject_fault(context.deployment.server, kind)
        # faults.json turns *_wall_s into times on the schedule's clock.
        return {"commands": facts["commands"], "end_wall_s": facts["done_at_s"]}

    return inject


for _kind in faults_of("k3s"):
    register_injector(_kind, _injector(_kind))
