"""fidelity.json of a runtime against pytorch fp32, and the gate that fails the workflow
when the runtime agrees too rarely (model.fidelity.min_label_agreement).

Outside Snakemake: python workflow/scripts/model_fidelity.py RUNTIME_DIR PYTORCH_DIR
PAYLOADS_CSV OUT_JSON [MIN_AGREEMENT]
"""

import logging
import sys
from pathlib import Path

from servebench.model import FidelityError, write_fidelity


def main(runtime_dir, reference_dir, payloads_csv, out_json, min_label_agreement=0.99):
    runtime_dir, reference_dir = Path(runtime_dir), Path(reference_dir)
    try:
        report = write_fidelity(
            runtime_dir,
            reference_dir,
            runtime_dir / "payload_probabilities.csv",
            reference_dir / "payload_probabilities.csv",
            payloads_csv,
            out_json,
            float(min_label_agreement),
        )
    except FidelityError as error:
        logging.error("%s", error)
        print(f"servebench: {error}", file=sys.stderr)
        sys.exit(1)
    logging.info("fidelity of %s: %s", runtime_dir.name, report)


if __name__ == "__main__":
    if "snakemake" in globals():
        sm = snakemake  # noqa: F821
        logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
        main(
            Path(sm.input.runtime).parent,
            Path(sm.input.reference_runtime).parent,
            sm.input.payloads,
            sm.output[0],
            sm.params.min_label_agreement,
        )
    else:
        logging.basicConfig(level=logging.INFO)
        main(*sys.argv[1:6])
