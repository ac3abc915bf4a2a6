"""Figures of the study, as PNG and PDF, from the raw results and the tables.

Every figure has units on its axes, the same colour for a variant everywhere (colours follow
the order of the config's `variants`, so adding a variant never recolours the others; the
Okabe-Ito palette is readable with colour-blindness), and fonts sized for a 3.5-inch column
(single panels) or a 7-inch page width (panel rows). A figure whose data is missing is still
written, as a panel that says what is missing, so the report and Snakemake always find it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.analysis.results import (
    RunRecord,
    load_runs,
    read_calibration,
    read_request_latencies,
    read_requests,
)
from servebench.layout import FAULTS, INPROCESS_BENCH, RESOURCES, SERVER_METRICS, Layout
from servebench.matrix import RunSpec, run_matrix
from servebench.queueing import mg1_p99_ms
from servebench.settings import study_variants

COLUMN_WIDTH_IN = 3.5
PAGE_WIDTH_IN = 7.0
# Okabe & Ito (2008): distinguishable with the common colour-vision deficiencies.
PALETTE = (
    "#0072B2",  # blue
    "#D55E00",  # vermillion
    "#009E73",  # green
    "#CC79A7",  # purple
    "#E69F00",  # orange
    "#56B4E9",  # sky blue
    "#000000",  # black
    "#F0E442",  # yellow (last: weak on white)
)
STYLE = {
    "font.size": 8,
    "axes.titlesize": 8,
    "axes.labelsize": 8,
    "legend.fontsize": 7,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "grid.linewidth": 0.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.2,
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "pdf.fonttype": 42,  # TrueType in the PDF: editable text, accepted by publishers
}
FORMATS = ("png", "pdf")
# Fixed metadata so that the same data gives byte-stable files.
METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None, "Creator": None}}

# Why a study on the external target has no token-length or in-process figure.
EXTERNAL_MODEL_NOTE = (
    "deploy.target external: the servers serve a model of their own, which this workflow "
    "does not prepare"
)
# Batch-size histograms of the Prometheus exposition (server_metrics.csv): BentoML's adaptive
# batcher's and the service's greedy batcher's (a server has one of them).
BATCH_SIZE_HISTOGRAMS = ("bentoml_service_adaptive_batch_size", "servebench_greedy_batch_size")


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def variant_colors(variants: Sequence[str]) -> dict[str, str]:
    """A colour per variant, by its position in the config's `variants` (stable)."""
    return {name: PALETTE[i % len(PALETTE)] for i, name in enumerate(variants)}


MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")


def underlay_width(index: int, count: int, base: float = 1.2) -> float:
    """Line width of the index-th of `count` curves: earlier ones wider, so that a curve that
    lies exactly on another (equal results) still shows beneath it."""
    return base + 0.9 * (count - 1 - index)


def save(figure: Any, out_base: Path) -> list[Path]:
    """Write <out_base>.png and <out_base>.pdf and close the figure."""
    plt = _pyplot()
    out_base.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for fmt in FORMATS:
        path = out_base.with_name(f"{out_base.name}.{fmt}")
        temporary = path.with_name(f".{path.name}.tmp")
        figure.savefig(temporary, format=fmt, metadata=METADATA[fmt])
        temporary.replace(path)
        paths.append(path)
    plt.close(figure)
    return paths


def placeholder(out_base: Path, title: str, message: str) -> list[Path]:
    """A figure that says why there is no figure."""
    plt = _pyplot()
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(COLUMN_WIDTH_IN, 1.6))
        axes.set_axis_off()
        axes.set_title(title)
        axes.text(0.5, 0.5, _wrap(message, 60), ha="center", va="center", transform=axes.transAxes)
        return save(figure, out_base)


def _wrap(text: str, width: int) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width)) or text


def _legend(axes: Any, **kwargs: Any) -> None:
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        axes.legend(frameon=False, **kwargs)


def _figure_legend(figure: Any, axes: Any, columns: int = 4) -> None:
    """One legend above the panels (it never hides data)."""
    handles, labels = axes.get_legend_handles_labels()
    if handles:
        figure.legend(
            handles,
            labels,
            loc="upper center",
            bbox_to_anchor=(0.5, 0.955),
            ncols=min(columns, len(handles)),
            frameon=False,
        )


def _plain_log(axis: Any) -> None:
    """Tick labels of a log axis as plain numbers (20, 50, 100), not 2x10^1."""
    from matplotlib import ticker

    axis.set_major_formatter(ticker.FuncFormatter(lambda value, _: f"{value:g}"))
    axis.set_minor_formatter(ticker.LogFormatter(labelOnlyBase=False, minor_thresholds=(1.5, 0.4)))


# --------------------------------------------------------------------------- latency


def latency_cdf(
    pooled: dict[str, dict[str, np.ndarray]],
    scenario: str,
    colors: dict[str, str],
    out_base: Path,
) -> list[Path]:
    """ECDF (log x) and complementary CDF (log-log, the tail) of per-request latency per
    variant: solid from the scheduled time, dashed from the actual send (service time)."""
    plt = _pyplot()
    if not any(len(groups.get("latency", [])) for groups in pooled.values()):
        return placeholder(out_base, f"Latency CDF: {scenario}", "no valid run with requests")
    with plt.rc_context(STYLE):
        figure, (cdf_axes, tail_axes) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 2.6))
        for index, (variant, groups) in enumerate(pooled.items()):
            for kind, style in (("latency", "-"), ("service", "--")):
                values = np.sort(groups.get(kind, np.array([])))
                values = values[np.isfinite(values) & (values > 0)]
                if not len(values):
                    continue
                n = len(values)
                probability = np.arange(1, n + 1) / n
                label = f"{variant}" if kind == "latency" else f"{variant} (from send)"
                color = colors.get(variant, "grey")
                width = underlay_width(index, len(pooled), 1.4 if kind == "latency" else 0.9)
                cdf_axes.step(values, probability, style, where="post", color=color, lw=width)
                tail = 1.0 - np.arange(0, n) / n  # P(X >= x): never 0 on a log axis
                tail_axes.step(
                    values, tail, style, where="post", color=color, lw=width, label=label
                )
        cdf_axes.set_xscale("log")
        _plain_log(cdf_axes.xaxis)
        cdf_axes.set_xlabel("latency (ms, log scale)")
        cdf_axes.set_ylabel("fraction of requests ≤ latency")
        cdf_axes.set_ylim(0, 1.0)
        for level in (0.5, 0.99):
            cdf_axes.axhline(level, color="grey", lw=0.5, ls=":")
        tail_axes.set_xscale("log")
        tail_axes.set_yscale("log")
        _plain_log(tail_axes.xaxis)
        _plain_log(tail_axes.yaxis)
        tail_axes.set_xlabel("latency (ms, log scale)")
        tail_axes.set_ylabel("fraction of requests ≥ latency")
        tail_axes.axhline(0.01, color="grey", lw=0.5, ls=":")
        tail_axes.text(
            1.0, 0.01, " p99", transform=tail_axes.get_yaxis_transform(), va="center", fontsize=6
        )
        _legend(tail_axes, loc="lower left")
        figure.suptitle(f"Latency distribution, scenario {scenario} (measured ok requests)")
        figure.tight_layout()
        return save(figure, out_base)


def percentile_bars(
    summary: pd.DataFrame,
    scenarios: Sequence[str],
    variants: Sequence[str],
    colors: dict[str, str],
    out_base: Path,
    ci_level: float = 0.95,
) -> list[Path]:
    """Latency percentiles (rows: from schedule, from send) per scenario (columns), bars per
    variant, with the t-interval over repetitions as error bars."""
    plt = _pyplot()
    present = [s for s in scenarios if s in set(summary.get("scenario", []))]
    if summary.empty or not present:
        return placeholder(out_base, "Latency percentiles", "no valid runs")
    quantiles = (50, 90, 95, 99)
    with plt.rc_context(STYLE):
        figure, axes_grid = plt.subplots(
            2,
            len(present),
            figsize=(max(PAGE_WIDTH_IN, 2.4 * len(present)), 4.2),
            squeeze=False,
        )
        shown = [v for v in variants if v in set(summary["variant"])]
        width = 0.8 / max(len(shown), 1)
        for row, (kind, title) in enumerate(
            (("latency", "latency (from schedule)"), ("service", "service time (from send)"))
        ):
            for column, scenario in enumerate(present):
                axes = axes_grid[row][column]
                here = summary[summary["scenario"] == scenario]
                counts = []
                for index, variant in enumerate(shown):
                    line = here[here["variant"] == variant]
                    if line.empty:
                        continue
                    line = line.iloc[0]
                    names = [f"{kind}_p{q}_ms" for q in quantiles]
                    heights = np.array([line[name] for name in names], dtype=float)
                    low = np.array([line[f"{name}_ci_low"] for name in names], dtype=float)
                    high = np.array([line[f"{name}_ci_high"] for name in names], dtype=float)
                    errors = np.vstack([heights - low, high - heights])
                    has_ci = bool(np.isfinite(errors).any())
                    errors = np.where(np.isfinite(errors), np.maximum(errors, 0), 0)
                    positions = np.arange(len(quantiles)) + (index - (len(shown) - 1) / 2) * width
                    counts.append(str(int(line["n_repetitions"])))
                    axes.bar(
                        positions,
                        heights,
                        width,
                        color=colors.get(variant, "grey"),
                        label=variant,
                        yerr=errors if has_ci else None,
                        capsize=2,
                        error_kw={"elinewidth": 0.8},
                    )
                axes.set_xticks(np.arange(len(quantiles)), [f"p{q}" for q in quantiles])
                axes.set_title(f"{scenario}: {title}\nvalid repetitions: {' / '.join(counts)}")
                axes.set_ylabel("ms")
                axes.grid(axis="x", visible=False)
        figure.suptitle(
            f"Latency percentiles: mean over repetitions, error bars {100 * ci_level:.0f}% "
            "t-interval over repetitions (none with 1 repetition)"
        )
        figure.tight_layout(rect=(0, 0, 1, 0.95))
        _figure_legend(figure, axes_grid[0][0], columns=6)
        return save(figure, out_base)


def latency_throughput(
    calibration: dict[str, tuple[pd.DataFrame | None, dict[str, Any] | None]],
    colors: dict[str, str],
    out_base: Path,
    slo_p99_ms: float | None = None,
    queueing_variant: str | None = None,
) -> list[Path]:
    """Every step of each variant's calibration search: p99 over all requests (and p50) against
    the rate really offered, with the SLO, the saturation throughput (dotted) and the capacity
    at the SLO (dashed); answered against offered rate (the diagonal is 'keeps up'). For
    `queueing_variant`, the M/G/1 p99 predicted from its unloaded service times (grey)."""
    plt = _pyplot()
    usable = {
        v: (steps, capacity)
        for v, (steps, capacity) in calibration.items()
        if steps is not None and len(steps)
    }
    if not usable:
        return placeholder(out_base, "Latency-throughput", "no calibration steps.csv found")
    with plt.rc_context(STYLE):
        figure, (latency_axes, rate_axes) = plt.subplots(1, 2, figsize=(PAGE_WIDTH_IN, 2.8))
        top = 0.0
        for index, (variant, (steps, capacity)) in enumerate(usable.items()):
            steps = steps.sort_values("offered_rate_rps", kind="stable")
            color = colors.get(variant, "grey")
            width = underlay_width(index, len(usable))
            marker = MARKERS[index % len(MARKERS)]
            size = 10 + 14 * (len(usable) - 1 - index)
            nominal = steps["offered_rate_rps"].to_numpy(dtype=float)
            realized = pd.to_numeric(steps["realized_offered_rate_rps"], errors="coerce")
            offered = np.where(np.isfinite(realized), realized, nominal)
            meets = steps["meets_slo"].astype(bool).to_numpy()
            # A p99 that is a failed request has no value: drawn at the top of the axis.
            p99 = pd.to_numeric(steps["p99_all_ms"], errors="coerce").to_numpy(dtype=float)
            p50 = pd.to_numeric(steps["p50_ms"], errors="coerce").to_numpy(dtype=float)
            latency_axes.plot(offered, p99, "-", color=color, lw=width)
            latency_axes.plot(offered, p50, ":", color=color, lw=width)
            latency_axes.scatter(
                offered[meets], p99[meets], color=color, s=size, marker=marker, zorder=3
            )
            latency_axes.scatter(
                offered[~meets],
                p99[~meets],
                facecolors="white",
                edgecolors=color,
                marker=marker,
                s=size,
                zorder=3,
            )
            answered = pd.to_numeric(steps["answered_rps"], errors="coerce").to_numpy(dtype=float)
            capacity = capacity or {}
            saturation, at_slo = capacity.get("saturation_rps"), capacity.get("capacity_rps")
            label = f"{variant}: saturation {_rate(saturation)}, at SLO " + (
                _rate(at_slo) if at_slo is not None else "unattainable"
            )
            rate_axes.plot(
                offered,
                answered,
                "-",
                marker=marker,
                color=color,
                lw=width,
                ms=3 + 1.5 * (len(usable) - 1 - index),
                label=label,
            )
            top = max(top, float(np.nanmax(offered)), float(np.nanmax(answered)))
            for value, style in ((saturation, ":"), (at_slo, "--")):
                if value is not None:
                    for axes in (latency_axes, rate_axes):
                        axes.axvline(value, color=color, ls=style, lw=0.5 + 0.8 * width / 2)
            if slo_p99_ms is None:
                slo_p99_ms = capacity.get("slo_p99_ms")
            service_ms = np.array(capacity.get("unloaded_ms") or [], dtype=float)
            if variant == queueing_variant and len(service_ms):
                # Up to 95% of the M/G/1 server's own capacity (1 / mean service time).
                rates = np.linspace(0.05, 0.95, 19) * 1000.0 / float(np.mean(service_ms))
                predicted = [mg1_p99_ms(service_ms, rate) for rate in rates]
                latency_axes.plot(
                    rates,
                    predicted,
                    "--",
                    color="grey",
                    lw=1.0,
                    label=f"M/G/1 p99 from {variant}'s unloaded service times",
                )
        if slo_p99_ms is not None:
            latency_axes.axhline(
                slo_p99_ms, color="black", lw=0.8, ls="-.", label=f"SLO: p99 ≤ {slo_p99_ms:g} ms"
            )
        latency_axes.set_yscale("log")
        _plain_log(latency_axes.yaxis)
        latency_axes.set_xlabel("offered rate, realized (req/s)")
        latency_axes.set_ylabel("latency (ms, log scale)")
        latency_axes.plot([], [], "-", color="black", label="p99, all requests")
        latency_axes.plot([], [], ":", color="black", label="p50")
        _legend(latency_axes, loc="best")
        rate_axes.plot([0, top], [0, top], color="grey", lw=0.6, ls=":", label="answered = offered")
        rate_axes.set_xlabel("offered rate, realized (req/s)")
        rate_axes.set_ylabel("answered ok (req/s)")
        _legend(rate_axes, loc="upper left")
        figure.suptitle(
            "Calibration search, every step (filled: meets the SLO; dotted: saturation, "
            "dashed: capacity at the SLO)"
        )
        figure.tight_layout()
        return save(figure, out_base)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g} req/s"


# --------------------------------------------------------------------------- workload


@dataclass
class InterarrivalData:
    """Realized interarrival gaps of a scenario's valid runs and the law they should follow."""

    gaps_s: np.ndarray
    rate_rps: float | None
    shape: float | None  # gamma shape k; None for constant arrivals
    target_cv: float | None
    realized_cv: float | None
    ks_pvalues: list[float] = field(default_factory=list)
    resolution_ms: float | None = None
    n_runs: int = 0


def interarrival_data(records: Sequence[RunRecord]) -> InterarrivalData | None:
    """Gaps between the actual send times of the measured requests, pooled over the valid runs
    (each run's gaps computed on its own)."""
    gaps: list[np.ndarray] = []
    first: dict[str, Any] | None = None
    pvalues = []
    for record in records:
        if not record.valid:
            continue
        requests = read_requests(record.path)
        if requests is None or "sent_s" not in requests:
            continue
        measured = requests[~requests["in_warmup"].astype(bool)]
        sent = np.sort(measured["sent_s"].dropna().to_numpy(dtype=float))
        if len(sent) < 3:
            continue
        gaps.append(np.diff(sent))
        first = first or record.summary
        if record.summary is not None and record.summary.ks_pvalue is not None:
            pvalues.append(float(record.summary.ks_pvalue))
    if not gaps or first is None:
        return None
    pooled = np.concatenate(gaps)
    mean = pooled.mean()
    return InterarrivalData(
        gaps_s=pooled,
        rate_rps=first.target_rate_rps,
        shape=first.gamma_shape,
        target_cv=first.target_cv,
        realized_cv=float(pooled.std() / mean) if mean > 0 else None,
        ks_pvalues=pvalues,
        resolution_ms=first.validity_rules.get("ks_resolution_ms"),
        n_runs=len(gaps),
    )


def interarrivals(data: dict[str, InterarrivalData | None], out_base: Path) -> list[Path]:
    """Per scenario: histogram of the realized interarrival times (log x, density per decade)
    against the target gamma density transformed to the same scale."""
    plt = _pyplot()
    from scipy import stats as sps

    present = {s: d for s, d in data.items() if d is not None and len(d.gaps_s)}
    if not present:
        return placeholder(out_base, "Interarrival times", "no valid run with requests")
    columns = min(len(present), 3)
    rows = math.ceil(len(present) / columns)
    with plt.rc_context(STYLE):
        figure, axes_grid = plt.subplots(
            rows, columns, figsize=(max(COLUMN_WIDTH_IN, 2.6 * columns), 2.6 * rows), squeeze=False
        )
        for axes in axes_grid.flat[len(present) :]:
            axes.set_axis_off()
        for axes, (scenario, d) in zip(axes_grid.flat, present.items(), strict=False):
            gaps_ms = d.gaps_s * 1000.0
            positive = gaps_ms[gaps_ms > 0]
            if not len(positive):
                axes.set_axis_off()
                continue
            low = max(positive.min(), 1e-3)
            high = positive.max()
            if d.rate_rps and d.shape:
                mean_ms = 1000.0 / d.rate_rps
                law = sps.gamma(d.shape, scale=mean_ms / d.shape)
                low = min(low, max(law.ppf(0.001), 1e-3))
                high = max(high, law.ppf(0.999))
            edges = np.logspace(np.log10(low), np.log10(high), 40)
            counts, _ = np.histogram(positive, bins=edges)
            width_decades = np.diff(np.log10(edges))
            density = counts / (len(gaps_ms) * width_decades)
            axes.stairs(density, edges, fill=True, color="#56B4E9", alpha=0.6, label="realized")
            if d.rate_rps and d.shape:
                x = np.logspace(np.log10(low), np.log10(high), 300)
                # density per decade: f(x) * x * ln(10)
                axes.plot(
                    x,
                    law.pdf(x) * x * math.log(10),
                    color="black",
                    lw=1.0,
                    label=f"target gamma k={d.shape:.3g}",
                )
            elif d.rate_rps:
                axes.axvline(1000.0 / d.rate_rps, color="black", lw=1.0, label="target (constant)")
            if d.resolution_ms:
                axes.axvline(
                    d.resolution_ms, color="grey", lw=0.6, ls=":", label="timer resolution"
                )
            axes.set_xscale("log")
            _plain_log(axes.xaxis)
            axes.set_xlabel("interarrival time (ms, log scale)")
            axes.set_ylabel("density per decade")
            text = []
            if d.target_cv is not None:
                text.append(f"CV target {d.target_cv:.3g}")
            if d.realized_cv is not None:
                text.append(f"realized {d.realized_cv:.3g}")
            if d.ks_pvalues:
                text.append(f"KS p min {min(d.ks_pvalues):.2g}")
            zeros = int((gaps_ms <= 0).sum())
            if zeros:
                text.append(f"{zeros} zero gaps not shown")
            axes.set_title(f"{scenario} ({d.n_runs} runs)", pad=14)
            axes.text(
                0.5,
                1.01,
                ", ".join(text),
                transform=axes.transAxes,
                ha="center",
                va="bottom",
                fontsize=6,
            )
            _legend(axes, loc="upper left", fontsize=6)
        figure.suptitle("Realized interarrival times vs the target law (measured requests)")
        figure.tight_layout()
        return save(figure, out_base)


def token_lengths(
    lengths: pd.DataFrame | None, summary: dict[str, Any] | None, out_base: Path
) -> list[Path]:
    """Histogram of payload lengths in tokens (special tokens included)."""
    plt = _pyplot()
    if lengths is None or "n_tokens" not in lengths or not len(lengths):
        return placeholder(out_base, "Payload token lengths", "no payload_token_lengths.csv")
    values = lengths["n_tokens"].to_numpy(dtype=int)
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
        bins = np.arange(values.min(), values.max() + 2) if np.ptp(values) < 80 else 60
        axes.hist(values, bins=bins, color="#0072B2", alpha=0.8)
        axes.set_xlabel("payload length (tokens)")
        axes.set_ylabel("payloads")
        for q, style in ((50, "--"), (99, ":")):
            value = np.percentile(values, q)
            axes.axvline(value, color="black", ls=style, lw=0.8, label=f"p{q} = {value:.0f}")
        max_length = (summary or {}).get("max_length")
        if max_length and max_length <= values.max() * 1.2:
            axes.axvline(max_length, color="#D55E00", lw=1.0, label=f"max length {max_length}")
        _legend(axes)
        model = (summary or {}).get("model_name") or ""
        axes.set_title(
            f"Payload lengths, n={len(values)}" + (f" ({model} tokenizer)" if model else "")
        )
        figure.tight_layout()
        return save(figure, out_base)


def inprocess_bench(frames: dict[str, pd.DataFrame], out_base: Path) -> list[Path]:
    """In-process throughput per runtime against batch size (no server, no HTTP), in payload
    order (lines) and length-sorted (stars): the ceiling each runtime can reach on the server
    cores."""
    plt = _pyplot()
    frames = {k: v for k, v in frames.items() if v is not None and len(v)}
    if not frames:
        return placeholder(out_base, "In-process benchmark", "no inprocess_bench.csv found")
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(COLUMN_WIDTH_IN, 2.4))
        for index, (runtime, frame) in enumerate(frames.items()):
            threads = frame["threads"].max()
            color = PALETTE[(index + 2) % len(PALETTE)]
            here = frame[frame["threads"] == threads]
            order = here["order"] if "order" in here else pd.Series("payload", index=here.index)
            payload = here[order == "payload"].sort_values("batch_size")
            axes.plot(
                payload["batch_size"],
                payload["sequences_per_s"],
                "-o",
                ms=3,
                color=color,
                label=f"{runtime} ({threads} thread{'s' if threads > 1 else ''})",
            )
            ordered = here[order == "sorted"]
            axes.scatter(
                ordered["batch_size"],
                ordered["sequences_per_s"],
                marker="*",
                s=40,
                color=color,
                zorder=3,
            )
        axes.scatter([], [], marker="*", s=40, color="black", label="length-sorted batches")
        axes.set_xscale("log", base=2)
        axes.set_xlabel("batch size (texts)")
        axes.set_ylabel("throughput (texts/s)")
        _legend(axes)
        axes.set_title("In-process throughput per runtime")
        figure.tight_layout()
        return save(figure, out_base)


def tuning_points(table: pd.DataFrame) -> pd.DataFrame:
    """Where the tuning figure draws each configuration with a p50 at the common rate (x):
    y its capacity at the SLO, for a race loser the rate it failed at (an upper bound), for
    one searched with the SLO met at no rate 0; `kind` measured | lost | unattainable;
    `chosen`. Configurations without that p50 (pruned, only screened) are not drawn."""
    p50 = pd.to_numeric(table["common_p50_ms"], errors="coerce")
    capacity = pd.to_numeric(table["capacity_rps"], errors="coerce")
    below = pd.to_numeric(table["capacity_below_rps"], errors="coerce")
    kind = np.select(
        [capacity.notna(), below.notna()], ["measured", "lost"], default="unattainable"
    )
    points = pd.DataFrame(
        {
            "trial": table["trial"].astype(str),
            "p50_ms": p50,
            "y_rps": np.where(kind == "measured", capacity, np.where(kind == "lost", below, 0.0)),
            "kind": kind,
            "chosen": (table["outcome"] == "chosen") & (kind != "lost"),
            "pareto": table["pareto"].astype(bool) & (kind == "measured"),
        },
        index=table.index,
    )
    return points[p50.notna()]


def tuning(table: pd.DataFrame | None, out_base: Path) -> list[Path]:
    """Every configuration the tuning stage measured: SLO capacity against p50 at the common
    rate (`tuning_points`): a race loser (open triangle) at the rate it failed, which bounds its
    capacity from above; one whose SLO was unattainable at 0; the Pareto front joined, the
    chosen one starred."""
    plt = _pyplot()
    if table is None or not len(table) or "common_p50_ms" not in table:
        return placeholder(out_base, "Tuning", "the tuning stage did not run (no tuning.csv)")
    points = tuning_points(table)
    p50, y = points["p50_ms"], points["y_rps"]
    measured = points["kind"] == "measured"
    lost = points["kind"] == "lost"
    unattainable = points["kind"] == "unattainable"
    front, chosen = points["pareto"], points["chosen"]
    with plt.rc_context(STYLE):
        figure, axes = plt.subplots(figsize=(PAGE_WIDTH_IN, 3.2))
        axes.scatter(p50[measured], y[measured], color=PALETTE[2], s=22, label="measured")
        axes.scatter(
            p50[lost],
            y[lost],
            marker="v",
            facecolors="white",
            edgecolors=PALETTE[4],
            s=26,
            label="lost its race (capacity below)",
        )
        if unattainable.any():
            axes.scatter(
                p50[unattainable],
                y[unattainable],
                marker="x",
                color=PALETTE[3],
                s=26,
                label="SLO unattainable (drawn at 0)",
            )
        order = p50[front].sort_values().index
        axes.plot(p50[order], y[order], "-", color=PALETTE[2], lw=0.8, label="Pareto front")
        axes.scatter(p50[chosen], y[chosen], marker="*", s=140, color=PALETTE[0], label="chosen")
        for index in points.index:
            axes.annotate(
                points.at[index, "trial"],
                (p50[index], y[index]),
                xytext=(3, 3),
                textcoords="offset points",
                fontsize=6,
            )
        rate = pd.to_numeric(table["common_rate_rps"], errors="coerce").dropna()
        at = f" ({rate.iloc[0]:.3g} req/s)" if len(rate) else ""
        axes.set_xlabel(f"p50 at the common rate{at} (ms)")
        axes.set_ylabel("capacity at the SLO (req/s)")
        _legend(axes, loc="best")
        axes.set_title("Tuning: every configuration tried (tuning.csv)")
        figure.tight_layout()
        return save(figure, out_base)


# --------------------------------------------------------------------------- over time


def _bin_width_s(horizon_s: float) -> float:
    """About 60 bins per run, at least 1 s, rounded to 1, 2, 5, 10, ..."""
    raw = max(horizon_s / 60.0, 1.0)
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300):
        if raw <= step:
            return float(step)
    return float(math.ceil(raw / 60.0) * 60)


def rate_and_p99_over_time(
    requests: pd.DataFrame, width_s: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Bins of `width_s`: (bin starts, offered rate by scheduled time, ok throughput by
    completion time, p99 latency of the ok requests scheduled in the bin)."""
    horizon = float(np.nanmax(requests[["scheduled_s", "done_s"]].to_numpy(dtype=float)))
    edges = np.arange(0.0, horizon + width_s, width_s)
    scheduled = requests["scheduled_s"].to_numpy(dtype=float)
    ok = requests["outcome"].astype(str).to_numpy() == "ok"
    done = requests["done_s"].to_numpy(dtype=float)
    offered = np.histogram(scheduled, bins=edges)[0] / width_s
    throughput = np.histogram(done[ok & np.isfinite(done)], bins=edges)[0] / width_s
    latency = requests["latency_ms"].to_numpy(dtype=float)
    which = np.digitize(scheduled, edges) - 1
    p99 = np.full(len(edges) - 1, np.nan)
    for index in range(len(edges) - 1):
        values = latency[(which == index) & ok]
        values = values[np.isfinite(values)]
        if len(values):
            p99[index] = np.percentile(values, 99)
    return edges[:-1], offered, throughput, p99


def timeline(
    runs: dict[str, tuple[pd.DataFrame, int]],
    scenario: str,
    colors: dict[str, str],
    out_base: Path,
    warmup_s: float = 0.0,
) -> list[Path]:
    """Throughput and p99 latency over time of one repetition per variant."""
    plt = _pyplot()
    runs = {v: r for v, r in runs.items() if r[0] is not None and len(r[0])}
    if not runs:
        return placeholder(out_base, f"Over time: {scenario}", "no valid run with requests")
    horizon = max(float(np.nanmax(r[0]["scheduled_s"])) for r in runs.values())
    width = _bin_width_s(horizon)
    with plt.rc_context(STYLE):
        figure, (rate_axes, p99_axes) = plt.subplots(
            2, 1, figsize=(PAGE_WIDTH_IN, 3.6), sharex=True
        )
        offered_drawn = False
        for index, (variant, (requests, repetition)) in enumerate(runs.items()):
            width_lw = underlay_width(index, len(runs))
            starts, offered, throughput, p99 = rate_and_p99_over_time(requests, width)
            centers = starts + width / 2
            color = colors.get(variant, "grey")
            if not offered_drawn:
                rate_axes.step(
                    centers, offered, where="mid", color="grey", lw=0.8, label="offered (schedule)"
                )
                offered_drawn = True
            rate_axes.step(
                centers,
                throughput,
                where="mid",
                color=color,
                lw=width_lw,
                label=f"{variant} (rep {repetition})",
            )
            p99_axes.plot(centers, p99, color=color, marker=".", ms=3, lw=width_lw)
        for axes in (rate_axes, p99_axes):
            if warmup_s > 0:
                axes.axvspan(0, warmup_s, color="grey", alpha=0.15, lw=0)
        rate_axes.set_ylabel("ok responses (req/s)")
        p99_axes.set_ylabel("p99 latency (ms, log)")
        p99_axes.set_yscale("log")
        _plain_log(p99_axes.yaxis)
        p99_axes.set_xlabel(f"time since schedule start (s); bins of {width:g} s; shaded: warm-up")
        figure.suptitle(f"Throughput and p99 latency over time, scenario {scenario}")
        figure.tight_layout(rect=(0, 0, 1, 0.95))
        _figure_legend(figure, rate_axes)
        return save(figure, out_base)


def batch_size_over_time(metrics: pd.DataFrame) -> pd.DataFrame:
    """Mean batch size between consecutive scrapes (Δsum / Δcount of the batcher's
    histogram, summed over workers and methods); empty without batching."""
    if metrics is None or metrics.empty or "metric" not in metrics:
        return pd.DataFrame(columns=["elapsed_s", "mean_batch_size", "batches"])
    names = {f"{name}_{part}": part for name in BATCH_SIZE_HISTOGRAMS for part in ("sum", "count")}
    wanted = metrics[metrics["metric"].isin(list(names))]
    if wanted.empty:
        return pd.DataFrame(columns=["elapsed_s", "mean_batch_size", "batches"])
    wide = (
        wanted.assign(part=wanted["metric"].map(names))
        .pivot_table(index="elapsed_s", columns="part", values="value", aggfunc="sum")
        .sort_index()
    )
    if "sum" not in wide or "count" not in wide:
        return pd.DataFrame(columns=["elapsed_s", "mean_batch_size", "batches"])
    delta = wide.diff().dropna()
    batches = delta["count"]
    mean = np.where(batches > 0, delta["sum"] / batches.where(batches > 0), np.nan)
    return pd.DataFrame(
        {"elapsed_s": delta.index.to_numpy(), "mean_batch_size": mean, "batches": batches}
    )


def _read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path)
    except Exception:  # noqa: BLE001 - an empty or cut file is reported as missing data
        return None


def server_timeline(
    runs: dict[str, tuple[Path, int]], scenario: str, colors: dict[str, str], out_base: Path
) -> list[Path]:
    """Server CPU, memory and the batcher's mean batch size over time, one repetition per
    variant (from resources.csv and server_metrics.csv, sampled once a second)."""
    plt = _pyplot()
    loaded = {
        v: (_read_csv(path / RESOURCES), _read_csv(path / SERVER_METRICS), rep)
        for v, (path, rep) in runs.items()
    }
    if not any(r is not None and len(r) for r, _, _ in loaded.values()):
        return placeholder(out_base, f"Server: {scenario}", "no resources.csv in the valid runs")
    with plt.rc_context(STYLE):
        figure, (cpu_axes, rss_axes, batch_axes) = plt.subplots(
            3, 1, figsize=(PAGE_WIDTH_IN, 4.6), sharex=True
        )
        no_batching = []
        for index, (variant, (resources, metrics, repetition)) in enumerate(loaded.items()):
            color = colors.get(variant, "grey")
            label = f"{variant} (rep {repetition})"
            width = underlay_width(index, len(loaded))
            if resources is not None and len(resources):
                elapsed = resources["elapsed_s"]
                cpu_axes.plot(elapsed, resources["cpu_percent"], color=color, lw=width, label=label)
                rss_axes.plot(elapsed, resources["rss_bytes"] / 2**20, color=color, lw=width)
            batches = batch_size_over_time(metrics)
            if len(batches) and batches["mean_batch_size"].notna().any():
                batch_axes.plot(
                    batches["elapsed_s"],
                    batches["mean_batch_size"],
                    color=color,
                    marker=".",
                    ms=3,
                    lw=0.8,
                )
            else:
                no_batching.append(variant)
        cpu_axes.set_ylabel("server CPU (% of a core)")
        rss_axes.set_ylabel("server RSS (MiB)")
        rss_axes.set_ylim(bottom=0)
        batch_axes.set_ylabel("mean batch size\n(texts per batch)")
        batch_axes.set_xlabel("time since the server was ready (s)")
        if no_batching:
            batch_axes.text(
                0.01,
                0.95,
                "no batching: " + ", ".join(no_batching),
                transform=batch_axes.transAxes,
                va="top",
                fontsize=6,
            )
        batch_axes.set_ylim(bottom=0)
        figure.suptitle(f"Server resources and batching over time, scenario {scenario}")
        figure.tight_layout(rect=(0, 0, 1, 0.955))
        _figure_legend(figure, cpu_axes)
        return save(figure, out_base)


# --------------------------------------------------------------------------- resilience hook


def read_faults(run_dir: Path) -> list[dict[str, Any]]:
    """faults.json of a resilience run: a list of {kind, start_s, end_s} (or {"faults": [...]}),
    times in seconds since the schedule start."""
    path = Path(run_dir) / FAULTS
    if not path.is_file():
        return []
    value = json.loads(path.read_text(encoding="utf-8"))
    faults = value.get("faults", []) if isinstance(value, dict) else value
    return [fault for fault in faults if isinstance(fault, dict)]


def _resilience_title(run_dir: Path) -> str:
    """variant, fault and restart policy from faults.json (servebench.faults), else the path."""
    path = Path(run_dir) / FAULTS
    value = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    if not isinstance(value, dict) or "variant" not in value:
        return str(run_dir)
    return (
        f"variant {value['variant']}, fault {value.get('fault')}, restart "
        f"{value.get('restart')}, repetition {value.get('repetition')}"
    )


def resilience_timeline(fault_run_dirs: Sequence[Path], out_base: Path) -> list[Path]:
    """Throughput, errors and p99 over time of resilience runs, fault windows shaded (the
    injection marked by a line); servebench.faults draws one figure per fault with it."""
    plt = _pyplot()
    runs = [(Path(d), read_requests(Path(d))) for d in fault_run_dirs]
    runs = [(d, r) for d, r in runs if r is not None and len(r)]
    if not runs:
        return placeholder(out_base, "Resilience", "no resilience run with requests")
    with plt.rc_context(STYLE):
        figure, axes_grid = plt.subplots(
            len(runs), 1, figsize=(PAGE_WIDTH_IN, 2.0 * len(runs)), squeeze=False
        )
        for axes, (run_dir, requests) in zip(axes_grid[:, 0], runs, strict=True):
            horizon = float(np.nanmax(requests["scheduled_s"]))
            width = _bin_width_s(horizon)
            starts, offered, throughput, p99 = rate_and_p99_over_time(requests, width)
            edges = np.append(starts, starts[-1] + width)
            failed = ~requests["outcome"].astype(str).isin(["ok"])
            errors = np.histogram(requests.loc[failed, "scheduled_s"], bins=edges)[0] / width
            centers = starts + width / 2
            axes.step(centers, offered, where="mid", color="grey", lw=0.8, label="offered")
            axes.plot(centers, throughput, color="#0072B2", label="ok responses")
            axes.plot(centers, errors, color="#D55E00", label="not ok (by schedule time)")
            axes.set_ylabel("req/s")
            twin = axes.twinx()
            twin.plot(centers, p99, color="black", lw=0.6, ls=":", label="p99")
            twin.set_yscale("log")
            twin.set_ylabel("p99 (ms)")
            for fault in read_faults(run_dir):
                start, end = fault.get("start_s"), fault.get("end_s")
                if start is not None:
                    axes.axvspan(start, end if end is not None else start, color="red", alpha=0.12)
                    axes.axvline(start, color="red", lw=0.8)  # an instant fault has no span
                    axes.text(
                        start, axes.get_ylim()[1], str(fault.get("kind", "fault")), fontsize=6
                    )
            axes.set_title(_resilience_title(run_dir))
            _legend(axes, loc="lower left", ncols=3)
        axes_grid[-1, 0].set_xlabel("time since schedule start (s); shaded: fault")
        figure.tight_layout()
        return save(figure, out_base)


# --------------------------------------------------------------------------- all figures


@dataclass
class FigureInputs:
    """Where render_figures reads from (all under the results tree)."""

    results_dir: Path
    tables_dir: Path
    token_lengths_csv: Path | None = None
    token_lengths_json: Path | None = None
    inprocess_bench_csvs: dict[str, Path] = field(default_factory=dict)

    @classmethod
    def of(cls, layout: Layout, model_name: str, runtimes: Sequence[str]) -> FigureInputs:
        return cls(
            results_dir=layout.results_dir,
            tables_dir=layout.tables_dir,
            token_lengths_csv=layout.token_lengths_csv,
            token_lengths_json=layout.token_summary_json,
            inprocess_bench_csvs={
                runtime: layout.model_dir(model_name, runtime) / INPROCESS_BENCH
                for runtime in runtimes
            },
        )


def _first_valid(records: Sequence[RunRecord]) -> RunRecord | None:
    valid = sorted((r for r in records if r.valid), key=lambda r: r.spec.repetition)
    return valid[0] if valid else None


def render_figures(
    config: dict[str, Any],
    specs: Sequence[RunSpec],
    inputs: FigureInputs,
    out_dir: str | Path,
) -> dict[str, Any]:
    """Every figure of `layout.figure_names(scenarios)` into `out_dir`; returns the manifest
    (per figure: files and notes about missing data), also written as manifest.json."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    experiment = config["experiment"]
    variants = list(experiment["variants"])
    scenarios = list(experiment["scenarios"])
    colors = variant_colors(study_variants(config) or variants)
    target = config["deploy"]["target"]
    ci_level = float(config["analysis"]["ci_level"])
    records = load_runs(specs, inputs.results_dir)
    manifest: dict[str, Any] = {}

    def note(name: str, text: str) -> None:
        manifest.setdefault(name, {}).setdefault("notes", []).append(text)

    def done(name: str, paths: list[Path]) -> None:
        manifest.setdefault(name, {})["files"] = [p.name for p in paths]

    summary_path = inputs.tables_dir / "summary.csv"
    summary = _read_csv(summary_path)
    if summary is None:
        note("latency_percentiles", f"no {summary_path}")
        summary = pd.DataFrame()
    done(
        "latency_percentiles",
        percentile_bars(
            summary, scenarios, variants, colors, out / "latency_percentiles", ci_level
        ),
    )

    calibration = {}
    slo = config["calibration"]["slo_p99_ms"]
    for variant in variants:
        capacity, steps, problems = read_calibration(inputs.results_dir, target, variant)
        for problem in problems:
            note("latency_throughput", problem)
        calibration[variant] = (steps, capacity)
    tuned = config["tuning"]["variant"]
    done(
        "latency_throughput",
        latency_throughput(
            calibration,
            colors,
            out / "latency_throughput",
            slo,
            queueing_variant=tuned if tuned in variants else None,
        ),
    )

    arrivals_data = {}
    for scenario in scenarios:
        here = [r for r in records if r.spec.scenario == scenario]
        arrivals_data[scenario] = interarrival_data(here)
        if arrivals_data[scenario] is None:
            note("interarrivals", f"{scenario}: no valid run with requests.parquet")
    done("interarrivals", interarrivals(arrivals_data, out / "interarrivals"))

    for scenario in scenarios:
        warmup_s = float(config["scenarios"][scenario]["warmup_s"])
        pooled: dict[str, dict[str, np.ndarray]] = {}
        chosen_requests: dict[str, tuple[pd.DataFrame, int]] = {}
        chosen_dirs: dict[str, tuple[Path, int]] = {}
        for variant in variants:
            here = [r for r in records if r.spec.scenario == scenario and r.spec.variant == variant]
            parts: dict[str, list[np.ndarray]] = {"latency": [], "service": []}
            for record in here:
                if not record.valid:
                    continue
                latencies = read_request_latencies(record.path)
                if latencies is None:
                    note(f"latency_cdf_{scenario}", f"{record.path}: no requests.parquet")
                    continue
                for kind in parts:
                    parts[kind].append(latencies[kind])
            if parts["latency"]:
                pooled[variant] = {k: np.concatenate(v) for k, v in parts.items()}
            else:
                note(f"latency_cdf_{scenario}", f"{variant}: no valid run")
            first = _first_valid(here)
            if first is not None:
                requests = read_requests(first.path)
                if requests is not None:
                    chosen_requests[variant] = (requests, first.spec.repetition)
                else:
                    note(f"timeline_{scenario}", f"{first.path}: no requests.parquet")
                chosen_dirs[variant] = (first.path, first.spec.repetition)
                for name in (RESOURCES, SERVER_METRICS):
                    if not (first.path / name).is_file():
                        note(f"server_{scenario}", f"{first.path}: no {name}")
        done(
            f"latency_cdf_{scenario}",
            latency_cdf(pooled, scenario, colors, out / f"latency_cdf_{scenario}"),
        )
        done(
            f"timeline_{scenario}",
            timeline(chosen_requests, scenario, colors, out / f"timeline_{scenario}", warmup_s),
        )
        done(
            f"server_{scenario}",
            server_timeline(chosen_dirs, scenario, colors, out / f"server_{scenario}"),
        )

    if target == "external":  # the servers' model is theirs: no model stage ran here
        inputs = dataclasses.replace(
            inputs, token_lengths_csv=None, token_lengths_json=None, inprocess_bench_csvs={}
        )
        for name in ("payload_tokens", "inprocess_bench"):
            note(name, EXTERNAL_MODEL_NOTE)
    lengths = _read_csv(inputs.token_lengths_csv) if inputs.token_lengths_csv else None
    token_summary = None
    if inputs.token_lengths_json and inputs.token_lengths_json.is_file():
        token_summary = json.loads(inputs.token_lengths_json.read_text(encoding="utf-8"))
    if lengths is None and inputs.token_lengths_csv is not None:
        note("payload_tokens", f"no {inputs.token_lengths_csv}")
    done("payload_tokens", token_lengths(lengths, token_summary, out / "payload_tokens"))

    frames = {}
    for runtime, path in inputs.inprocess_bench_csvs.items():
        frame = _read_csv(path)
        if frame is None:
            note("inprocess_bench", f"no {path}")
        else:
            frames[runtime] = frame
    done("inprocess_bench", inprocess_bench(frames, out / "inprocess_bench"))

    tuning_path = inputs.tables_dir / "tuning.csv"
    tuning_rows = _read_csv(tuning_path)
    if tuning_rows is None or not len(tuning_rows):
        note("tuning", f"no tuning stage ({tuning_path} empty or missing)")
    done("tuning", tuning(tuning_rows, out / "tuning"))

    (out / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return manifest


def write_study_figures(
    config: dict[str, Any], model_name: str, runtimes: Sequence[str], out_dir: Path | None = None
) -> dict[str, Any]:
    """The study's figures from the results tree into results/figures/ (or `out_dir`)."""
    layout = Layout.of(config)
    inputs = FigureInputs.of(layout, model_name, runtimes)
    return render_figures(config, run_matrix(config), inputs, out_dir or layout.figures_dir)
