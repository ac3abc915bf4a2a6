"""results/tables/resilience.csv and results/figures/resilience_<fault>.{png,pdf} from the
resilience runs' faults.json; see servebench.faults.resilience_outputs.

Outside Snakemake: python workflow/scripts/resilience_analysis.py [--configfile FILE ...]
"""

import argparse
import logging
from pathlib import Path

from servebench.config import load_config
from servebench.faults import resilience_outputs


def main(config, table_path, figures_dir) -> None:
    written = resilience_outputs(config, table_path, figures_dir)
    logging.info("wrote %s", written["table"])
    for fault, paths in written["figures"].items():
        logging.info("%s: %s", fault, ", ".join(paths))


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        main(sm.config, sm.output.table, Path(sm.output.table).parent.parent / "figures")
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        config = load_config(*args.configfile)
        results_dir = Path(config["results_dir"])
        main(config, results_dir / "tables" / "resilience.csv", results_dir / "figures")
