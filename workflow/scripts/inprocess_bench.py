"""Rule inprocess_bench: inprocess_bench.csv of one runtime, pinned to the server's cores (the
ceiling the served system is compared with; servebench.model.bench)."""

import logging
from pathlib import Path

from servebench.model.bench import write_inprocess_bench

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
table = write_inprocess_bench(
    Path(sm.input.runtime).parent,
    sm.input.payloads,
    sm.output[0],
    bench_config=sm.params.bench,
    cpus=sm.params.cpus,
)
logging.info("\n%s", table.to_string(index=False))
