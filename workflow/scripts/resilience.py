"""Rule resilience_run: one fault injected into a running load test
(servebench.jobs.resilience; by hand: servebench job resilience)."""

import logging
from pathlib import Path

from servebench.jobs.resilience import run_fault
from servebench.matrix import FaultRunSpec

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
spec = FaultRunSpec(
    sm.wildcards.target, sm.wildcards.rvariant, sm.wildcards.fault, int(sm.wildcards.rep)
)
out_dir = Path(sm.output.meta).parent
result = run_fault(
    sm.config, spec, sm.input.bento or None, sm.input.payloads, out_dir, sm.input.capacity or None
)
entry = result["faults"][0]
logging.info(
    "resilience run %s finished: injected at %s s, %s not ok, recovered after %s s, %s lost, "
    "problems: %s",
    out_dir,
    entry.get("start_s"),
    entry.get("requests_not_ok"),
    entry.get("time_to_recover_s"),
    entry.get("requests_lost"),
    result["problems"] or "none",
)
