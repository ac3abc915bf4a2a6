"""Rule report_html: results/report.html (servebench.report.html; by hand: servebench report
render)."""

import logging

from servebench.report.html import render_study_report

sm = snakemake  # noqa: F821
logging.basicConfig(filename=sm.log[0], level=logging.INFO, format="%(message)s")
path = render_study_report(sm.config, sm.params.model_name, sm.params.runtimes, sm.output.html)
logging.info("wrote %s (%.1f MiB)", path, path.stat().st_size / 2**20)
