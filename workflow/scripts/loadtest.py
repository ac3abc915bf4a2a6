"""One run of the matrix: deploy, load, tear down; see servebench.runs.run_scenario."""

import logging

from servebench.experiment import RunSpec
from servebench.runs import run_scenario
from servebench.script_args import parse_run_args, snakemake_run_inputs


def main(config, spec, bento_record, payloads, out_dir, capacity=None) -> None:
    summary = run_scenario(config, spec, bento_record, payloads, out_dir, capacity)
    state = "valid" if summary.get("valid") else f"INVALID {summary.get('invalid_reasons')}"
    logging.info("run %s finished: %s", out_dir, state)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        spec = RunSpec(
            sm.wildcards.target, sm.wildcards.variant, sm.wildcards.scenario, int(sm.wildcards.rep)
        )
        main(sm.config, spec, *snakemake_run_inputs(sm))
    else:
        config, args = parse_run_args(__doc__, "scenario")
        spec = RunSpec(config["deploy"]["target"], args.variant, args.scenario, args.repetition)
        main(config, spec, args.bento_record, args.payloads, args.out_dir, args.capacity)
