"""Typed records of the result files that cross layers: what a job writes and the analysis reads.

`RunSummary` is summary.json: written by the load generator (servebench.loadgen.summary) and
read by the jobs and the analysis. Its keys are defined here once; files written by an older
version load with the fields they have (the others stay None).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTCOMES = ("ok", "rejected", "failed", "timeout", "dropped")
# The columns of a generator worker's per-request log (raw/requests_worker<i>.csv).
LOG_COLUMNS = (
    "index",
    "worker",
    "payload_index",
    "scheduled_s",
    "sent_s",
    "done_s",
    "status",
    "outcome",
    "delayed",
    "error",
)
PERCENTILES = (50, 90, 95, 99)


@dataclass
class RunSummary:
    """summary.json of one load test: the schedule, rates, latency statistics and validity.

    Latency is measured from the scheduled send time (`latency_*`, no coordinated omission) and
    from the actual send (`service_*`); both over the measured (post-warm-up) ok requests, as
    order statistics, each percentile with its distribution-free 95 % interval in `*_ci_ms`
    (None: too few requests for one). `latency_all_*` count every measured request.
    A run that failed before it could measure has only `valid`, `invalid_reasons`, `error`.
    """

    valid: bool = False
    invalid_reasons: list[str] = field(default_factory=list)
    error: str | None = None
    # the schedule
    arrival: str | None = None
    seed: int | None = None
    schedule_hash: str | None = None
    horizon_s: float | None = None
    warmup_s: float | None = None
    planned_requests: int | None = None
    measured_planned_requests: int | None = None
    measured_sent_requests: int | None = None
    # rates (req/s) over the measured window
    target_rate_rps: float | None = None
    offered_rate_rps: float | None = None
    achieved_rate_rps: float | None = None
    throughput_rps: float | None = None
    # interarrival law
    target_cv: float | None = None
    schedule_cv: float | None = None
    realized_cv: float | None = None
    gamma_shape: float | None = None
    ks_statistic: float | None = None
    ks_pvalue: float | None = None
    ks_reference: str | None = None
    # The same test of the drawn schedule's own measured gaps: a seed's draw fails it at the
    # test's level by chance, which is no fault of the generator.
    schedule_ks_pvalue: float | None = None
    # The realized gaps against the drawn schedule's (arrivals.send_ks_test): the validity rule.
    send_ks_statistic: float | None = None
    send_ks_pvalue: float | None = None
    # send lag, latency from the schedule, service time from the send (ms)
    send_lag_p50_ms: float | None = None
    send_lag_p90_ms: float | None = None
    send_lag_p95_ms: float | None = None
    send_lag_p99_ms: float | None = None
    send_lag_min_ms: float | None = None
    send_lag_max_ms: float | None = None
    send_lag_mean_ms: float | None = None
    send_lag_ci_ms: dict[str, list[float] | None] = field(default_factory=dict)
    latency_p50_ms: float | None = None
    latency_p90_ms: float | None = None
    latency_p95_ms: float | None = None
    latency_p99_ms: float | None = None
    latency_min_ms: float | None = None
    latency_max_ms: float | None = None
    latency_mean_ms: float | None = None
    latency_ci_ms: dict[str, list[float] | None] = field(default_factory=dict)
    service_p50_ms: float | None = None
    service_p90_ms: float | None = None
    service_p95_ms: float | None = None
    service_p99_ms: float | None = None
    service_min_ms: float | None = None
    service_max_ms: float | None = None
    service_mean_ms: float | None = None
    service_ci_ms: dict[str, list[float] | None] = field(default_factory=dict)
    # over every measured request, one not answered ok counting as infinitely slow (None:
    # the percentile is such a request): what an SLO judges
    latency_all_p50_ms: float | None = None
    latency_all_p99_ms: float | None = None
    # SLO gates (servebench.slo): goodput, the ok answers per second whose latency from the
    # schedule was at most goodput_latency_ms (the smallest latency gate; None: no latency
    # gate), over the throughput's window; each gate with its measured value and verdict
    goodput_rps: float | None = None
    goodput_latency_ms: float | None = None
    slo_gates: list[dict[str, Any]] = field(default_factory=list)
    # what else ran on the measured cores (servebench.cpus.ForeignCpu; set by the jobs)
    foreign_cpu_percent: float | None = None
    # requests by outcome
    counts: dict[str, int] = field(default_factory=dict)
    counts_including_warmup: dict[str, int] = field(default_factory=dict)
    delayed_requests: int | None = None
    missing_requests: int | None = None
    # the generator
    generator_cpu_percent: float | None = None
    generator_cpu_percent_by_worker: dict[str, float | None] = field(default_factory=dict)
    loadgen_workers: int | None = None
    interrupted: bool = False
    locust_exit_code: int | None = None
    validity_rules: dict[str, float] = field(default_factory=dict)
    schedule: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None

    @classmethod
    def failed(cls, reason: str, error: str | None = None) -> RunSummary:
        """The summary of a run that could not measure (it is kept, as invalid data)."""
        return cls(valid=False, invalid_reasons=[reason], error=error)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunSummary:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in data.items() if key in names})

    @classmethod
    def read(cls, path: str | Path) -> RunSummary:
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def n_measured(self) -> int:
        """Requests scheduled after the warm-up and recorded, whatever their outcome."""
        return sum(int(value) for value in self.counts.values())

    @property
    def error_rate(self) -> float | None:
        """Failed, timed-out and dropped (never sent: the generator's in-flight cap) requests
        per measured request; rejections (429/503) are the server shedding load on purpose and
        are counted apart."""
        n = self.n_measured
        errors = sum(int(self.counts.get(name, 0)) for name in ("failed", "timeout", "dropped"))
        return errors / n if n else None

    @property
    def rejection_rate(self) -> float | None:
        n = self.n_measured
        return int(self.counts.get("rejected", 0)) / n if n else None

    @property
    def failure_rate(self) -> float | None:
        """Every measured request not answered ok (errors and rejections) per measured one."""
        n = self.n_measured
        return (n - int(self.counts.get("ok", 0))) / n if n else None


SUMMARY_FIELDS = tuple(f.name for f in dataclasses.fields(RunSummary))


@dataclasses.dataclass(frozen=True)
class Ceiling:
    """A runtime's in-process ceiling: its best texts/s and the strategy that reached it."""

    runtime: str
    texts_per_s: float
    order: str  # payload | sorted (servebench.model.bench)
    batch_size: int
    threads: int

    @property
    def strategy(self) -> str:
        batches = "length-sorted batches" if self.order == "sorted" else "batches"
        threads = "thread" if self.threads == 1 else "threads"
        return f"{batches} of {self.batch_size}, {self.threads} {threads}"


def inprocess_ceiling(inprocess_bench_csv: str | Path, cores: int) -> Ceiling | None:
    """The in-process ceiling of a runtime: its best texts/s in the model stage's in-process
    benchmark (any batch size and order) within `cores` threads; None without the file."""
    import pandas as pd

    path = Path(inprocess_bench_csv)
    if not path.is_file():
        return None
    table = pd.read_csv(path)
    table = table[table["threads"] <= cores]
    if not len(table):
        return None
    best = table.loc[table["sequences_per_s"].idxmax()]
    return Ceiling(
        runtime=str(best["runtime"]),
        texts_per_s=float(best["sequences_per_s"]),
        order=str(best.get("order", "payload")),
        batch_size=int(best["batch_size"]),
        threads=int(best["threads"]),
    )
