"""Rule model_predictions: probabilities of every payload under one runtime (the input of the
fidelity check; servebench.model.fidelity)."""

import logging
from pathlib import Path

from servebench.model.fidelity import write_predictions

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
write_predictions(
    Path(sm.input.runtime).parent, sm.input.payloads, sm.output[0], threads=sm.threads
)
