"""The report's items (report/items.yaml: titles, categories, caption files of every table and
figure), shared by the HTML report and the workflow's figure outputs (Snakemake's --report)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from servebench.config import BUNDLED_DIR
from servebench.layout import figure_names

# The report's templates, style, items and captions: report/ in a checkout (the bundled link
# resolves there), package data in an installed servebench (`servebench compare`, `report`).
REPORT_DIR = (BUNDLED_DIR / "report").resolve()


def load_items(report_dir: Path = REPORT_DIR) -> dict[str, Any]:
    return yaml.safe_load((report_dir / "items.yaml").read_text(encoding="utf-8"))


def caption_path(report_dir: Path, name: str) -> Path:
    return report_dir / "captions" / f"{name}.rst"


def workflow_figure_outputs(
    config: dict[str, Any], results_dir: str | Path, report_dir: Path = REPORT_DIR
) -> dict[str, tuple[str, str | None, str | None, str | None]]:
    """Output name -> (path, caption name, category, subcategory) of every figure file, for
    the figures rule (workflow/rules/analysis.smk). PNGs carry the caption and category of
    report/items.yaml (Snakemake's --report shows them); PDFs carry none."""
    items = load_items(report_dir)["figures"]
    scenarios = config["experiment"]["scenarios"]
    outputs: dict[str, tuple[str, str | None, str | None, str | None]] = {}
    for name in figure_names(config["experiment"]["scenarios"]):
        base, scenario = name, None
        for key, item in items.items():
            if item.get("per_scenario") and name.startswith(f"{key}_"):
                if name[len(key) + 1 :] in scenarios:
                    base, scenario = key, name[len(key) + 1 :]
        item = items[base]
        key = name.replace("-", "_")
        outputs[f"{key}_png"] = (
            str(Path(results_dir, "figures", f"{name}.png")),
            item["caption"],
            item["category"],
            scenario,
        )
        outputs[f"{key}_pdf"] = (str(Path(results_dir, "figures", f"{name}.pdf")), None, None, None)
    return outputs
