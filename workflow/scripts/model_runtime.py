"""Rules model_pytorch and model_runtime: one runtime directory (pytorch, onnx, onnx-int8, or a
CUDA fp16 one; servebench.model.build)."""

import logging
from pathlib import Path

from servebench.config import BUNDLED_CORPUS
from servebench.model.build import build_runtime

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
runtime = sm.wildcards.get("runtime", "pytorch")
provenance = build_runtime(
    runtime,
    Path(sm.output.provenance).parent,
    model_config=sm.params.model,
    source_dir=Path(sm.input.source).parent if "source" in sm.input.keys() else None,
    corpus_path=sm.input.corpus[0] if sm.input.get("corpus") else BUNDLED_CORPUS,
    expected_name=sm.params.name,
)
logging.info(
    "%s runtime of %s (%s weights): %d bytes on disk, load peak RSS %s bytes",
    runtime,
    provenance["model_name"],
    provenance["weights"],
    provenance["size_on_disk_bytes"],
    provenance.get("load", {}).get("peak_rss_bytes"),
)
