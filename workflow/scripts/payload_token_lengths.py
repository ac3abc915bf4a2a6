"""Token length of every payload under the model's tokenizer, and a summary JSON.

Outside Snakemake: python workflow/scripts/payload_token_lengths.py PAYLOADS_CSV RUNTIME_DIR
OUT_CSV OUT_JSON
"""

import logging
import sys
from pathlib import Path

from servebench.model import write_token_lengths


def main(payloads_csv, runtime_dir, out_csv, out_json):
    summary = write_token_lengths(payloads_csv, runtime_dir, out_csv, out_json)
    logging.info("token lengths: %s", summary)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
        runtime_dir = Path(sm.input.runtime).parent
        main(sm.input.payloads, runtime_dir, sm.output.lengths, sm.output.summary)
    else:
        logging.basicConfig(level=logging.INFO)
        main(*sys.argv[1:5])
