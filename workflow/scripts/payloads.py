"""The payload set (id, text, label) of the config's `data:` section.

Outside Snakemake: python workflow/scripts/payloads.py OUT_CSV [SOURCE [N [SEED]]]
"""

import logging
import sys

from servebench.model import write_payloads


def main(out_csv, data_config):
    write_payloads(data_config, out_csv)


if __name__ == "__main__":
    if "snakemake" in globals():
        logging.basicConfig(filename=snakemake.log[0], level=logging.INFO, force=True)  # noqa: F821
        main(snakemake.output[0], snakemake.params.data)  # noqa: F821
    else:
        logging.basicConfig(level=logging.INFO)
        args = sys.argv[1:] + [None] * 4
        data = {"source": args[1] or "bundled", "n_requests": int(args[2] or 1000)}
        main(args[0], {**data, "seed": int(args[3] or 1)})
