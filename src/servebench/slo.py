"""SLO gates: `METRIC<=NUMBER` or `METRIC>=NUMBER` judged on one run's summary, and goodput.

Grammar of a gate (spaces ignored, as in `servebench loadtest --slo 'p99_ms <= 200'`):

    gate   := metric ("<=" | ">=") number
    metric := one of GATE_METRICS (names with their unit, read from summary.json)
    number := a decimal number, e.g. 200, 0.01, 1e-3

A gate passes when the measured value satisfies it. A latency percentile that falls on a
request not answered ok is infinite (`p99_all_ms`): it fails every `<=` and passes every `>=`;
any other value the run could not measure (no ok request at all) fails the gate.

Goodput (`goodput_rps` in summary.json, as vLLM's `--goodput` and DistServe define it): the
requests per second that were answered ok *and* met every latency gate, each judged
on its own latency from its scheduled send time: a request counts when its latency is at most
the smallest threshold of the `<=` gates on a latency metric (`goodput_latency_ms`). It is
counted as `throughput_rps` is (the ok answers that arrived between the end of the warm-up
and the end of the schedule, over that window), so goodput <= throughput, equal when every ok
request met the gates. Without a latency gate it is not defined (None).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from servebench.records import RunSummary


@dataclass(frozen=True)
class Metric:
    """A value of the run summary that a gate may judge."""

    field: str  # the RunSummary attribute (a field or a property)
    description: str
    latency: bool = False  # a percentile of the latency from the scheduled send time
    missing_is_infinite: bool = False  # None means "a request not answered ok"


GATE_METRICS: dict[str, Metric] = {
    **{
        f"p{q}_ms": Metric(
            f"latency_p{q}_ms",
            f"{q}th percentile of the latency of ok requests, from the scheduled send time",
            latency=True,
        )
        for q in (50, 90, 95, 99)
    },
    "max_ms": Metric("latency_max_ms", "largest latency of an ok request", latency=True),
    **{
        f"p{q}_all_ms": Metric(
            f"latency_all_p{q}_ms",
            f"{q}th percentile of the latency of every measured request, one not answered ok "
            "counting as infinitely slow",
            latency=True,
            missing_is_infinite=True,
        )
        for q in (50, 99)
    },
    "error_rate": Metric(
        "error_rate", "failed, timed-out and dropped requests per measured request"
    ),
    "rejection_rate": Metric(
        "rejection_rate", "requests the server rejected (429, 503) per measured request"
    ),
    "failure_rate": Metric(
        "failure_rate", "requests not answered ok (errors and rejections) per measured request"
    ),
    "throughput_rps": Metric("throughput_rps", "ok answers per second"),
    "achieved_rate_rps": Metric("achieved_rate_rps", "requests sent per second"),
    "goodput_rps": Metric(
        "goodput_rps", "ok answers per second that met every latency gate (see above)"
    ),
}

_GATE = re.compile(r"^\s*([a-z0-9_]+)\s*(<=|>=)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*$")


class GateError(ValueError):
    """A gate that does not parse: one readable line."""


@dataclass(frozen=True)
class Gate:
    """One SLO gate: `metric op threshold`."""

    metric: str
    op: str  # "<=" or ">="
    threshold: float

    @classmethod
    def parse(cls, text: str) -> Gate:
        match = _GATE.match(text)
        if match is None:
            raise GateError(
                f"SLO gate {text!r}: expected METRIC<=NUMBER or METRIC>=NUMBER, "
                "e.g. 'p99_ms<=200' or 'error_rate<=0.01'"
            )
        metric, op, number = match.groups()
        if metric not in GATE_METRICS:
            raise GateError(
                f"SLO gate {text!r}: unknown metric {metric!r} (known: {', '.join(GATE_METRICS)})"
            )
        return cls(metric, op, float(number))

    def __str__(self) -> str:
        return f"{self.metric}{self.op}{self.threshold:g}"

    def judge(self, summary: RunSummary) -> dict[str, Any]:
        """The gate, its measured value and whether it passed (as recorded in summary.json)."""
        metric = GATE_METRICS[self.metric]
        value = getattr(summary, metric.field)
        if value is None and metric.missing_is_infinite and summary.n_measured:
            value = math.inf
        if value is None:
            passed = False
        elif self.op == "<=":
            passed = value <= self.threshold
        else:
            passed = value >= self.threshold
        return {
            "gate": str(self),
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            # JSON has no infinity: "inf" says the percentile fell on a failed request.
            "value": "inf" if value == math.inf else value,
            "passed": bool(passed),
        }


def parse_gates(texts: list[str] | tuple[str, ...]) -> tuple[Gate, ...]:
    """Every gate of `texts` (GateError on the first that does not parse)."""
    return tuple(Gate.parse(text) for text in texts)


def goodput_latency_ms(gates: tuple[Gate, ...] | list[Gate]) -> float | None:
    """The latency a request must not exceed to count in goodput: the smallest threshold of the
    `<=` gates on a latency metric (None: no such gate, goodput undefined)."""
    bounds = [g.threshold for g in gates if g.op == "<=" and GATE_METRICS[g.metric].latency]
    return min(bounds) if bounds else None


def judge(gates: tuple[Gate, ...] | list[Gate], summary: RunSummary) -> list[dict[str, Any]]:
    """Each gate judged on `summary`, in the order given."""
    return [gate.judge(summary) for gate in gates]


def gates_report(verdicts: list[dict[str, Any]]) -> str:
    """One line per gate: `PASS  p99_ms<=200  (measured 12.3)`."""
    lines = []
    for verdict in verdicts:
        value = verdict["value"]
        shown = "not measured" if value is None else ("inf" if value == "inf" else f"{value:.4g}")
        lines.append(
            f"{'PASS' if verdict['passed'] else 'FAIL'}  {verdict['gate']}  (measured {shown})"
        )
    return "\n".join(lines)
