"""results/report.html: the self-contained HTML report; see servebench.report.

Outside Snakemake: python workflow/scripts/report_html.py [--configfile FILE ...] MODEL_DIR
[OUT_HTML]   (MODEL_DIR: results/model/<model name>)
"""

import logging
from pathlib import Path

from servebench.report import ReportInputs, render_report
from servebench.script_args import parse_rendering_args


def main(config, model_dir, runtimes, out_html) -> None:
    results_dir = Path(config["results_dir"])
    inputs = ReportInputs(
        results_dir=results_dir,
        tables_dir=results_dir / "tables",
        figures_dir=results_dir / "figures",
        environment_json=results_dir / "provenance" / "environment.json",
        model_dir=Path(model_dir),
        token_summary_json=results_dir / "data" / "payload_token_lengths_summary.json",
        runtimes=list(runtimes),
    )
    path = render_report(config, inputs, out_html)
    logging.info("wrote %s (%.1f MiB)", path, path.stat().st_size / 2**20)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
        main(
            sm.config,
            Path(sm.config["results_dir"], "model", sm.params.model_name),
            sm.params.runtimes,
            sm.output.html,
        )
    else:
        config, args, runtimes = parse_rendering_args(
            __doc__, "out_html", "default: <results_dir>/report.html"
        )
        main(
            config,
            args.model_dir,
            runtimes,
            args.out_html or Path(config["results_dir"], "report.html"),
        )
