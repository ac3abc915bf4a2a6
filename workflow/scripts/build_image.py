"""Rule image: one variant's container image (servebench.deploy.images; by hand: servebench
image build --variant NAME)."""

import json
import logging
from pathlib import Path

from servebench.deploy.images import ensure_bento_image

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(asctime)s %(message)s")
record = json.loads(Path(sm.input.bento).read_text(encoding="utf-8"))
image = ensure_bento_image(
    record,
    sm.config["results_dir"],
    repository=sm.params.repository,
    registry=sm.params.registry,
    log=sm.log[0],
)
# The record is the rule's output: both paths come from servebench.layout (image_record).
logging.info(
    "variant %s: image %s (%s, %d bytes)%s",
    sm.wildcards.variant,
    image["image"],
    image["image_id"],
    image["size_bytes"],
    " (reused)" if image["reused"] else f" built in {image['build_s']} s",
)
