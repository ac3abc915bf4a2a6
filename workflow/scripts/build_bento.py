"""Rule bento: one variant's Bento (servebench.bento; by hand: servebench bento build)."""

import json
import logging
from pathlib import Path

from servebench.bento import build_bento

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
variant = sm.wildcards.variant
runtime_dirs = {Path(path).parent.name: Path(path).parent for path in sm.input.runtimes}
settings = None
if sm.input.tuned:  # the tuning stage's winner
    settings = json.loads(Path(sm.input.tuned[0]).read_text(encoding="utf-8"))["settings"]
runtime = (settings or sm.config["variants"][variant])["runtime"]
record = build_bento(
    sm.config, variant, runtime_dirs[runtime], sm.output[0], log=sm.log[0], settings=settings
)
logging.info(
    "variant %s: Bento %s (%d bytes; model %s, %d bytes)%s",
    variant,
    record["tag"],
    record["bento_size_bytes"],
    record["model_tag"],
    record["model_size_bytes"],
    " (reused)" if record["reused_existing_bento"] else "",
)
