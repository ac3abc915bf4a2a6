"""Rule figures: results/figures/*.{png,pdf} (servebench.analysis.figures; by hand: servebench
report render)."""

import logging
from pathlib import Path

from servebench.analysis.figures import write_study_figures

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
logging.getLogger("fontTools").setLevel(logging.WARNING)  # PDF font subsetting chatter
manifest = write_study_figures(
    sm.config, sm.params.model_name, sm.params.runtimes, Path(sm.output.manifest).parent
)
for name, entry in manifest.items():
    logging.info("%s: %s", name, ", ".join(entry.get("files", [])))
    for note in entry.get("notes", []):
        logging.warning("%s: %s", name, note)
