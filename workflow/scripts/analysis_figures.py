"""results/figures/*.{png,pdf} from the runs, the calibration, the tables and the model stage;
see servebench.figures.

Outside Snakemake: python workflow/scripts/analysis_figures.py [--configfile FILE ...] MODEL_DIR
[OUT_DIR]   (MODEL_DIR: results/model/<model name>)
"""

import logging
from pathlib import Path

from servebench.experiment import run_matrix
from servebench.figures import FigureInputs, render_figures
from servebench.script_args import parse_rendering_args


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
        config, args, runtimes = parse_rendering_args(
            __doc__, "out_dir", "default: <results_dir>/figures"
        )
        logging.getLogger("fontTools").setLevel(logging.WARNING)
        main(
            config, args.model_dir, runtimes, args.out_dir or Path(config["results_dir"], "figures")
        )
