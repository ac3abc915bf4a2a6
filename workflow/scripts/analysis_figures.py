"""results/figures/*.{png,pdf} from the runs, the calibration, the tables and the model stage;
see servebench.figures.

Outside Snakemake: python workflow/scripts/analysis_figures.py [--configfile FILE ...] MODEL_DIR
[OUT_DIR]   (MODEL_DIR: results/model/<model name>)
"""

import argparse
import logging
from pathlib import Path

from servebench.config import load_config
from servebench.experiment import run_matrix
from servebench.figures import FigureInputs, render_figures


def main(config, model_dir, runtimes, out_dir) -> None:
    results_dir = Path(config["results_dir"])
    inputs = FigureInputs(
        results_dir=results_dir,
        tables_dir=results_dir / "tables",
        token_lengths_csv=results_dir / "data" / "payload_token_lengths.csv",
        token_lengths_json=results_dir / "data" / "payload_token_lengths_summary.json",
        inprocess_bench_csvs={r: Path(model_dir, r, "inprocess_bench.csv") for r in runtimes},
    )
    manifest = render_figures(config, run_matrix(config), inputs, out_dir)
    for name, entry in manifest.items():
        logging.info("%s: %s", name, ", ".join(entry.get("files", [])))
        for note in entry.get("notes", []):
            logging.warning("%s: %s", name, note)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
        logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
        main(
            sm.config,
            Path(sm.config["results_dir"], "model", sm.params.model_name),
            sm.params.runtimes,
            Path(sm.output.manifest).parent,
        )
    else:
        parser = argparse.ArgumentParser(description=__doc__)
        parser.add_argument("model_dir")
        parser.add_argument("out_dir", nargs="?", help="default: <results_dir>/figures")
        parser.add_argument("--configfile", action="append", default=[])
        args = parser.parse_args()
        logging.basicConfig(level=logging.INFO, format="%(message)s")
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        config = load_config(*args.configfile)
        runtimes = ["pytorch"] + [r for r in config["model"]["runtimes"] if r != "pytorch"]
        main(
            config, args.model_dir, runtimes, args.out_dir or Path(config["results_dir"], "figures")
        )
