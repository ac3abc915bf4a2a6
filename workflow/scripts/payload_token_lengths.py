"""Rule payload_token_lengths: the token length of every payload under the model's tokenizer,
and a summary (servebench.model.tokens)."""

import logging
from pathlib import Path

from servebench.model.tokens import write_token_lengths

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
summary = write_token_lengths(
    sm.input.payloads, Path(sm.input.runtime).parent, sm.output.lengths, sm.output.summary
)
logging.info("token lengths: %s", summary)
