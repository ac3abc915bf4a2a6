"""comparison.html: the comparison of two studies (servebench.analysis.compare) as one
self-contained page, with the study report's tables, style and macros (report/compare.html.j2,
report/macros.html.j2, report/report.css)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from servebench.analysis.compare import (
    FIGURE_NAME,
    HTML_NAME,
    Comparison,
    study_facts,
)
from servebench.report.html import (
    DASH,
    HEADLINE_METRICS,
    VERDICT_CLASSES,
    HtmlTable,
    _cell,
    comparison_rows_table,
    data_uri,
    downloads,
    frame_table,
    summary_html_table,
)
from servebench.report.items import REPORT_DIR

TEMPLATE = "compare.html.j2"


def comparison_page_table(
    comparison: pd.DataFrame, metrics: Any, a: str, b: str, ci_level: float
) -> HtmlTable:
    """B against A per (variant, scenario, metric): both means, the ratio (or difference) with
    its interval, the test and its design, Holm's p, Cliff's delta, the verdict."""
    headers = ["variant", "scenario", "metric", a, b, f"{b} / {a} [{100 * ci_level:.0f}% t-CI]"]

    def test(row: pd.Series) -> str:
        name = row["test"] if isinstance(row["test"], str) and row["test"] else DASH
        return f"{name} ({int(row['n_pairs'])} pairs)"

    return comparison_rows_table(
        comparison,
        metrics,
        [*headers, "test (pairs)"],
        lambda row: [row["variant_group"], row["scenario"], row["metric"]],
        test,
    )


def verdict_blocks(comparison: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (variant, scenario): the verdicts on the headline metrics."""
    blocks = []
    headline = comparison[comparison["metric"].isin(HEADLINE_METRICS[:3])]
    for (group, scenario), rows in headline.groupby(["variant_group", "scenario"], sort=False):
        design = ", ".join(sorted(set(rows["design"].dropna().astype(str)) - {""})) or "not tested"
        blocks.append(
            {
                "title": f"{group}, scenario {scenario}",
                "design": design,
                "pairs": int(rows["n_pairs"].max()),
                "verdicts": [
                    {"text": r["verdict"], "css": VERDICT_CLASSES.get(r["verdict_class"], "")}
                    for _, r in rows.iterrows()
                ],
            }
        )
    return blocks


def build_comparison_context(result: Comparison, out_dir: Path) -> dict[str, Any]:
    a, b = result.a.label, result.b.label
    comparison = result.comparison
    summary = result.summary.copy()
    if len(summary):
        summary["variant"] = summary["study"] + ": " + summary["variant"].astype(str)
    png = out_dir / f"{FIGURE_NAME}.png"
    designs = comparison["design"].fillna("").astype(str) if len(comparison) else pd.Series()
    return {
        "title": f"servebench comparison: {b} against {a}",
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "a": a,
        "b": b,
        "studies": [study_facts(result.a), study_facts(result.b)],
        "alpha": result.settings.alpha,
        "ci_level_percent": f"{100 * result.settings.ci_level:.0f}",
        "n_paired": int((designs == "paired").sum()),
        "n_unpaired": int((designs == "unpaired").sum()),
        "n_untested": int((designs == "").sum()),
        "blocks": verdict_blocks(comparison),
        "ratio_figure": {
            "id": FIGURE_NAME,
            "title": f"{b} / {a}: headline metrics",
            "caption": (
                f"<p>The ratio of {b}'s mean to {a}'s for every variant and scenario both "
                "studies ran (1x = no change), with its interval at the "
                "Holm-adjusted level that the verdict uses; colour = verdict. For latency a "
                "ratio below 1 is better, for throughput above 1.</p>"
            ),
            "src": data_uri(png, "image/png") if png.is_file() else None,
            "missing": None if png.is_file() else f"{png} was not found",
            "notes": [],
            "pdf": f"{FIGURE_NAME}.pdf",
        },
        "headline": comparison_page_table(
            comparison, HEADLINE_METRICS, a, b, result.settings.ci_level
        )
        if len(comparison)
        else None,
        "full": comparison_page_table(comparison, None, a, b, result.settings.ci_level)
        if len(comparison)
        else None,
        "summary": summary_html_table(summary, result.settings.ci_level) if len(summary) else None,
        "unmatched": frame_table(result.unmatched) if len(result.unmatched) else None,
        "invalid": _invalid_table(result.runs),
        "downloads": downloads(out_dir),
    }


def _invalid_table(runs: pd.DataFrame) -> HtmlTable | None:
    if runs.empty or "valid" not in runs.columns:
        return None
    invalid = runs[~runs["valid"].astype(bool)]
    if invalid.empty:
        return None
    table = HtmlTable(["study", "variant", "scenario", "repetition", "status", "reasons"])
    for _, row in invalid.iterrows():
        table.add(
            [
                row["study"],
                row["variant"],
                row["scenario"],
                int(row["repetition"]),
                row["status"],
                _cell(row.get("invalid_reasons")),
            ]
        )
    return table


def render_comparison(
    result: Comparison, out_dir: str | Path, report_dir: Path = REPORT_DIR
) -> Path:
    """<out_dir>/comparison.html (written atomically) from the comparison and the files
    servebench.analysis.compare.write_comparison wrote into `out_dir`."""
    import jinja2

    out = Path(out_dir)
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(report_dir)),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    page = environment.get_template(TEMPLATE).render(**build_comparison_context(result, out))
    path = out / HTML_NAME
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(page, encoding="utf-8")
    os.replace(temporary, path)
    return path
