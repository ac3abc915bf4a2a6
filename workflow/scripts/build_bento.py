"""Rule bento: one variant's Bento (servebench.bento; by hand: servebench bento build)."""

import logging
from pathlib import Path

from servebench.bento import build_bento

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
variant = sm.wildcards.variant
record = build_bento(sm.config, variant, Path(sm.input.runtime).parent, sm.output[0], log=sm.log[0])
logging.info(
    "variant %s: Bento %s (%d bytes; model %s, %d bytes)%s",
    variant,
    record["tag"],
    record["bento_size_bytes"],
    record["model_tag"],
    record["model_size_bytes"],
    " (reused)" if record["reused_existing_bento"] else "",
)
