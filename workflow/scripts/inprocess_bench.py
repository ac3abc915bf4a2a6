"""inprocess_bench.csv of one runtime: latency and sequences/s per batch size and thread
count, pinned to the server's cores (the ceiling the served system is compared with).

Outside Snakemake: python workflow/scripts/inprocess_bench.py RUNTIME_DIR PAYLOADS_CSV OUT_CSV
(the default config's batch sizes and server cores)
"""

import logging
import sys
from pathlib import Path

from servebench.config import DEFAULT_CONFIG_PATH, load_yaml
from servebench.model import write_inprocess_bench


def main(runtime_dir, payloads_csv, out_csv, bench_config, cpus):
    table = write_inprocess_bench(
        runtime_dir, payloads_csv, out_csv, bench_config=bench_config, cpus=cpus
    )
    logging.info("\n%s", table.to_string(index=False))


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
        runtime_dir = Path(sm.input.runtime).parent
        main(runtime_dir, sm.input.payloads, sm.output[0], sm.params.bench, sm.params.cpus)
    else:
        logging.basicConfig(level=logging.INFO)
        config = load_yaml(DEFAULT_CONFIG_PATH)
        bench = config["model"]["inprocess_bench"]
        main(*sys.argv[1:4], bench, config["cpus"]["server"])
