"""Build one runtime directory (pytorch, onnx, onnx-int8, or a CUDA fp16 one).

Outside Snakemake: python workflow/scripts/model_runtime.py RUNTIME OUT_DIR [SOURCE_DIR]
(the default config's model; pytorch trains the synthetic tokenizer on data/texts.csv).
"""

import logging
import sys
from pathlib import Path

from servebench.config import DEFAULT_CONFIG_PATH, load_yaml
from servebench.model import BUNDLED_CORPUS, build_runtime


def main(runtime, out_dir, source_dir=None, model_config=None, corpus=BUNDLED_CORPUS, name=None):
    provenance = build_runtime(
        runtime,
        out_dir,
        model_config=model_config,
        source_dir=source_dir,
        corpus_path=corpus,
        expected_name=name,
    )
    logging.info(
        "%s runtime of %s (%s weights): %d bytes on disk, load peak RSS %s bytes",
        runtime,
        provenance["model_name"],
        provenance["weights"],
        provenance["size_on_disk_bytes"],
        provenance.get("load", {}).get("peak_rss_bytes"),
    )


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
        out_dir = Path(sm.output.provenance).parent
        runtime = sm.wildcards.get("runtime", "pytorch")
        source = Path(sm.input.source).parent if "source" in sm.input.keys() else None
        corpus = sm.input.corpus[0] if sm.input.get("corpus") else BUNDLED_CORPUS
        main(runtime, out_dir, source, sm.params.model, corpus, sm.params.name)
    else:
        logging.basicConfig(level=logging.INFO)
        model = load_yaml(DEFAULT_CONFIG_PATH)["model"]
        main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None, model)
