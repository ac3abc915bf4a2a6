"""One resilience run: deploy, load, inject the fault, measure; see servebench.faults.run_fault.

Outside Snakemake: python workflow/scripts/resilience.py [--configfile FILE ...] VARIANT FAULT
REPETITION BENTO_RECORD PAYLOADS OUT_DIR [--capacity CAPACITY_JSON]
(VARIANT and FAULT: names under resilience.variants and resilience.faults)
"""

import logging

from servebench.faults import FaultRunSpec, run_fault
from servebench.script_args import parse_run_args, snakemake_run_inputs


def main(config, spec, bento_record, payloads, out_dir, capacity=None) -> None:
    result = run_fault(config, spec, bento_record, payloads, out_dir, capacity)
    entry = result["faults"][0]
    logging.info(
        "resilience run %s finished: injected at %s s, %s not ok, recovered after %s s, "
        "%s lost, problems: %s",
        out_dir,
        entry.get("start_s"),
        entry.get("requests_not_ok"),
        entry.get("time_to_recover_s"),
        entry.get("requests_lost"),
        result["problems"] or "none",
    )


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        spec = FaultRunSpec(
            sm.wildcards.target, sm.wildcards.rvariant, sm.wildcards.fault, int(sm.wildcards.rep)
        )
        main(sm.config, spec, *snakemake_run_inputs(sm))
    else:
        config, args = parse_run_args(__doc__, "fault")
        spec = FaultRunSpec(config["deploy"]["target"], args.variant, args.fault, args.repetition)
        main(config, spec, args.bento_record, args.payloads, args.out_dir, args.capacity)
