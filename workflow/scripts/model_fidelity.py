"""Rule model_fidelity: fidelity.json of a runtime against pytorch fp32, and the gate that
fails the workflow when the runtime agrees too rarely (servebench.model.fidelity)."""

import logging
import sys
from pathlib import Path

from servebench.model.fidelity import FidelityError, write_fidelity

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
try:
    report = write_fidelity(
        Path(sm.input.runtime).parent,
        Path(sm.input.reference_runtime).parent,
        sm.input.candidate,
        sm.input.reference,
        sm.input.payloads,
        sm.output[0],
        sm.params.fidelity,
    )
except FidelityError as error:
    logging.error("%s", error)
    print(f"servebench: {error}", file=sys.stderr)
    sys.exit(1)
logging.info("fidelity of %s: %s", Path(sm.input.runtime).parent.name, report)
