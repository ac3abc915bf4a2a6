"""Probabilities of every payload under one runtime (input of the fidelity check).

Outside Snakemake: python workflow/scripts/model_predictions.py RUNTIME_DIR PAYLOADS_CSV OUT_CSV
"""

import logging
import sys
from pathlib import Path

from servebench.model import write_predictions


def main(runtime_dir, payloads_csv, out_csv, threads=1):
    write_predictions(runtime_dir, payloads_csv, out_csv, threads=threads)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
        main(Path(sm.input.runtime).parent, sm.input.payloads, sm.output[0], sm.threads)
    else:
        logging.basicConfig(level=logging.INFO)
        main(*sys.argv[1:4])
