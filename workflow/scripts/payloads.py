"""Rule payloads: the payload set (id, text, label) of the config's `data:` section
(servebench.payloads)."""

import logging

from servebench.payloads import write_payloads

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, force=True)
write_payloads(sm.params.data, sm.output[0])
