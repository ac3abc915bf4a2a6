"""Calibration: a search for two answers per variant (or any HTTP endpoint).

- **saturation throughput**: the highest rate the server keeps up with, whatever the latency:
  the more of what the highest rate that kept up answered and the highest ok departure rate
  of a step that did not keep up and held an overload, however late the generator sent
  (overload_held; a server keeps up in the long run with any rate below what it answers
  under sustained overload, and a batching server's speed grows with its queue, which takes
  longer to build than a step);
- **capacity at the SLO**: the highest rate that keeps up *and* meets the p99 objective, with
  every lower rate passing too, confirmed by a repeat at that rate. "Unattainable" (the
  unloaded p99 exceeds the SLO, or no rate down to a tiny one meets it) is an answer, not an
  error.

The search starts from the server's own unloaded service time (a few requests sent one after
another), not from a fixed rate, so it works on any machine: the first step offers about
`start_utilization` of what one request at a time could do (the nearest power of `ramp_factor`
req/s, so that searches step through one grid of rates and each rate draws the same seeded
arrivals in every search: step_seed). It ramps geometrically
(`ramp_factor`) to the first step that does not keep up, then bisects (geometric midpoints)
each bracket, [last pass, first fail], until its ends are within `bracket_precision`. Each
step is an open-loop Poisson load test that holds at least `min_step_requests` measured
requests and `min_step_duration_s` seconds after `step_warmup_s` of warm-up; the two rates
that decide the capacity at the SLO (the ends of its bracket) are repeated until they hold
`slo_verdict_requests` requests each, so the answer rests on more requests than the steps far
from it.

A step keeps up when it answered ok at least (1 - achieved_rate_tolerance) of the rate its
seeded schedule really offered, errors and rejections stayed within `max_error_rate`, the
generator's run is valid (it sent on schedule), nothing else used the measured cores, and the
server is still alive. It meets the SLO when it keeps up and the p99 over *all* its measured
requests (one that failed, was rejected or timed out counts as infinitely slow) is within
`slo_p99_ms`. A rate keeps up only if every step at it kept up. For the SLO, the p99 measured
at each rate below the first that did not keep up is fitted as a non-decreasing function of the
rate (pooling adjacent violators: a rate whose p99 exceeds a higher rate's is pooled with it,
the p99 taken over all their requests together; slo_bracket), and a rate meets the SLO when its
pool's p99 is within it: a repeat at a rate adds its requests to the first step's, and the
answer rests on all the requests near it instead of on the noisiest single step. Both answers
are reported as the rates actually offered and answered at the highest passing rate (means
over its steps), with the bracket they were found in.

Writes steps.csv (every step of the search), capacity.json and one step<i>/ folder per step.
"""

from __future__ import annotations

import logging
import math
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.arrivals import rate_realizing
from servebench.deploy import deployed
from servebench.jobs.common import clear_dir, deployment_record, measured_loadtest
from servebench.layout import CAPACITY, INPROCESS_BENCH, REQUESTS, STEPS
from servebench.loadgen.probe import sequential_latencies_ms, wait_until_idle
from servebench.loadgen.runner import DEFAULT_BODY_TEMPLATE, render_body
from servebench.loadgen.summary import all_request_latencies_ms
from servebench.matrix import derived_seed
from servebench.model.bench import ceiling_cell_texts_per_s
from servebench.payloads import read_texts
from servebench.provenance import write_json
from servebench.quantiles import quantile, quantile_ci_ranks
from servebench.records import Ceiling, RunSummary, inprocess_ceiling
from servebench.settings import CalibrationSettings, LoadgenSettings, deploy_target

log = logging.getLogger("servebench.jobs")

# Without a saturation bracket (no step kept up), a rate this far below the first step (a
# utilization of about 3%) ends the downward searches.
LOWEST_RATE_FRACTION = 1 / 16
# Most rounds of repeats of the SLO bracket's ends (a repeat that changes the bracket starts
# another round of bisection). On the simulated M/D/1 queue of tests/test_calibration.py, 800
# requests a step: every one of 1000 searches ended confirmed with 5 rounds and one repeat per
# end; with the ends repeated to 6400 requests (slo_verdict_requests), 90 % did with 5, all
# of 300 with 10.
MAX_CONFIRMATIONS = 10
# judge_step's reason for a server that did not live through its step.
SERVER_DIED = "the server died"
# Most measurements of one step whose measurement failed (other processes on the cores).
MAX_REMEASURES = 3


def grid_rate(rate: float, factor: float) -> float:
    """The power of `factor` (req/s) nearest `rate` on a log scale."""
    return float(factor ** round(math.log(rate, factor)))


@dataclass
class Step:
    """One load test of the search and its verdicts."""

    index: int
    phase: str  # ramp | saturation | slo | confirm
    rate_rps: float  # the offered rate, which the measured part of its schedule realizes
    summary: RunSummary
    keeps_up: bool
    meets_slo: bool
    reasons: list[str]
    duration_s: float
    # The measurement itself failed (other processes on the cores, too few requests): the
    # step says nothing about the server and is run again.
    discarded: bool = False
    # Every measured request's latency, sorted, not-ok ones infinite (the SLO's p99 of a rate
    # pools its steps'); None where the step's requests were not read.
    latencies_all_ms: np.ndarray | None = field(default=None, repr=False)

    def row(self) -> dict[str, Any]:
        summary = self.summary
        return {
            "step": self.index,
            "phase": self.phase,
            "offered_rate_rps": self.rate_rps,
            "realized_offered_rate_rps": summary.offered_rate_rps,
            "schedule_rate_rps": summary.target_rate_rps,
            "answered_rps": summary.throughput_rps,
            "n_measured": summary.n_measured,
            "p50_ms": summary.latency_p50_ms,
            "p99_ms": summary.latency_p99_ms,
            "p99_all_ms": summary.latency_all_p99_ms,
            "service_p99_ms": summary.service_p99_ms,
            "error_rate": summary.error_rate,
            "rejection_rate": summary.rejection_rate,
            "generator_valid": summary.valid,
            "foreign_cpu_percent": summary.foreign_cpu_percent,
            "keeps_up": self.keeps_up,
            "meets_slo": self.meets_slo,
            "discarded": self.discarded,
            "reasons": "; ".join(self.reasons),
            "duration_s": round(self.duration_s, 3),
        }


def judge_step(
    summary: RunSummary, calibration: CalibrationSettings, server_alive: bool
) -> tuple[bool, bool, list[str]]:
    """(keeps up, meets the SLO, why not) of one step: the one definition of both."""
    reasons = []
    offered = summary.offered_rate_rps
    answered = summary.throughput_rps or 0.0
    if not server_alive:
        reasons.append(SERVER_DIED)
    if offered is None or offered <= 0:
        reasons.append("nothing was offered")
    elif answered < (1.0 - calibration.achieved_rate_tolerance) * offered:
        reasons.append(f"answered {answered:.4g} of {offered:.4g} req/s offered")
    failed = (summary.error_rate or 0.0) + (summary.rejection_rate or 0.0)
    if failed > calibration.max_error_rate:
        reasons.append(f"{100 * failed:.2g}% errors and rejections")
    if not summary.valid:
        reasons += [f"generator: {reason}" for reason in summary.invalid_reasons]
    keeps_up = not reasons
    p99 = summary.latency_all_p99_ms
    meets_slo = keeps_up and p99 is not None and p99 <= calibration.slo_p99_ms
    if keeps_up and not meets_slo:
        reasons.append(
            "p99 of all requests is a failure"
            if p99 is None
            else f"p99 {p99:.4g} ms > SLO {calibration.slo_p99_ms:g} ms"
        )
    return keeps_up, meets_slo, reasons


def step_discarded(
    summary: RunSummary,
    min_requests: int,
    foreign_cpu_max_percent: float,
    last_try: bool,
    held_overload: bool,
) -> bool:
    """Whether a step's measurement failed, so that it says nothing about the server and is
    measured again: other processes used the measured cores, it holds too few requests, or
    the load generator did not send on schedule (its run is invalid: sends late, off the
    rate) and the step did not hold an overload (holds_overload: then what the server
    answered does not depend on when each request was sent; a generator with a deep queue
    of open requests sends late more often, and such steps were measured again up to 5
    times in one study's search). On the last try the generator's verdict stands: a rate at
    which it could never send counts as one not kept up (judge_step), so a search cannot
    loop on it."""
    if (summary.foreign_cpu_percent or 0.0) > foreign_cpu_max_percent:
        return True
    if summary.n_measured < min_requests:
        return True
    return not summary.valid and not last_try and not held_overload


def steps_by_rate(steps: list[Step]) -> dict[float, list[Step]]:
    """The steps that measured, by nominal rate."""
    by_rate: dict[float, list[Step]] = {}
    for step in steps:
        if not step.discarded:
            by_rate.setdefault(step.rate_rps, []).append(step)
    return by_rate


def bracket(
    steps: list[Step], passed: Callable[[list[Step]], bool]
) -> tuple[float | None, float | None]:
    """(lo, hi) nominal rates: lo the highest rate that passed with every lower rate passing,
    hi the lowest rate that failed; None where none. `passed` judges the steps of one rate
    (keeps_up_at; the SLO's bracket is slo_bracket)."""
    by_rate = steps_by_rate(steps)
    lo = hi = None
    for rate in sorted(by_rate):
        if not passed(by_rate[rate]):
            hi = rate
            break
        lo = rate
    return lo, hi


def keeps_up_at(steps: list[Step]) -> bool:
    """A rate keeps up when every step at it kept up."""
    return all(step.keeps_up for step in steps)


def pooled_p99_all_ms(steps: list[Step]) -> float | None:
    """The p99 over every measured request of `steps` together (not-ok ones infinite); None
    where a step's requests were not read."""
    if any(step.latencies_all_ms is None for step in steps):
        return None
    pooled = np.sort(np.concatenate([step.latencies_all_ms for step in steps]))
    return quantile(pooled, 0.99) if len(pooled) else math.inf


def _block_p99_ms(steps: list[Step]) -> float:
    """The pooled p99 of a block of steps; where a step's requests were not read, 0 when every
    step met the SLO on its own and infinite otherwise."""
    pooled = pooled_p99_all_ms(steps)
    if pooled is not None:
        return pooled
    return 0.0 if all(step.meets_slo for step in steps) else math.inf


def slo_bracket(steps: list[Step], slo_p99_ms: float) -> tuple[float | None, float | None]:
    """(lo, hi) nominal rates of the SLO answer: lo the highest rate that meets it, hi the
    lowest that does not; None where none.

    Only rates below the first one that did not keep up count (every step at a rate must keep
    up). The true p99 rises with the rate, so the measured one is fitted as a non-decreasing
    function of the rate by pooling adjacent violators: rates are blocks, and while a block's
    pooled p99 exceeds the next higher block's, the two become one block whose p99 is that of
    all their requests together. A rate meets the SLO when its block's p99 is within it. So a
    repeat at a rate pools its requests with the first step's, a lucky pass above a failure
    is pooled with it (and counts only if the pool passes), and a noisy failure below passes
    only if the pool with the higher rates that passed does: the answer rests on all the
    requests near it, not on the noisiest single step."""
    by_rate = steps_by_rate(steps)
    blocks: list[tuple[list[float], list[Step], float]] = []  # (rates, steps, pooled p99)
    not_keeping_up = None  # the first rate that did not keep up
    for rate in sorted(by_rate):
        if not keeps_up_at(by_rate[rate]):
            not_keeping_up = rate
            break
        rates, pooled = [rate], by_rate[rate]
        value = _block_p99_ms(pooled)
        while blocks and blocks[-1][2] > value:
            lower_rates, lower_steps, _ = blocks.pop()
            rates, pooled = lower_rates + rates, lower_steps + pooled
            value = _block_p99_ms(pooled)
        blocks.append((rates, pooled, value))
    lo = None
    for rates, _, value in blocks:
        if value > slo_p99_ms:
            return lo, rates[0]
        lo = rates[-1]
    return lo, not_keeping_up


def holds_overload(summary: RunSummary, server_alive: bool, tolerance: float) -> bool:
    """Whether a step measured its server under overload: the server lived, the generator ran
    to the end of its schedule, and it sent more than the server answered (beyond
    `tolerance`). The generator's timing need not be valid here: a departure rate under
    overload does not depend on when each request was sent, only on a queue that never
    empties, and a generator that sends late at a high rate (seen in CI: send-lag p99 5.5 ms
    at 256 req/s, the FIFO server answering its 200) still builds one."""
    sent, answered = summary.achieved_rate_rps, summary.throughput_rps
    return (
        server_alive
        and not summary.interrupted
        and summary.locust_exit_code in (0, None)
        and summary.offered_rate_rps is not None
        and sent is not None
        and answered is not None
        and answered < (1.0 - tolerance) * sent
    )


def overload_held(step: Step, tolerance: float) -> bool:
    """holds_overload, of a step already judged."""
    return holds_overload(step.summary, SERVER_DIED not in step.reasons, tolerance)


@dataclass
class SearchResult:
    steps: list[Step] = field(default_factory=list)
    unloaded_ms: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unattainable: str | None = None
    confirmed: bool = False
    search_s: float = 0.0
    stopped_at_deadline: bool = False  # cut short by deadline_monotonic (the tuning's budget)

    def at_rate(self, rate: float | None) -> list[Step]:
        """The steps at a nominal rate (a repeat, where there is one, among them)."""
        return [step for step in self.steps if step.rate_rps == rate and not step.discarded]

    def requests_at(self, rate: float | None) -> int:
        """The measured requests of the steps at a nominal rate (its SLO verdict's sample)."""
        return sum(step.summary.n_measured for step in self.at_rate(rate))

    def rates_at(self, rate: float | None) -> tuple[float | None, float | None]:
        """(answered, offered) req/s at a nominal rate: the means over its steps, as the SLO
        verdict pools them (each step's schedule realizes the nominal rate to half a
        request; the answered rate may fall short of it by the tolerance)."""
        steps = self.at_rate(rate)
        answered = [step.summary.throughput_rps for step in steps]
        offered = [step.summary.offered_rate_rps for step in steps]
        if not steps or None in answered or None in offered:
            return None, None
        return float(np.mean(answered)), float(np.mean(offered))

    def fastest_overload(self, tolerance: float) -> Step | None:
        """The step that answered the most per second among those that did not keep up and
        held an overload (overload_held): what the server answers with a queue that never
        empties. Not simply the deepest overload: a server that must also refuse (BentoML
        reads a body before it answers 429) answered 68.5 req/s at 128 offered with 35 %
        refused and 75.1 at 90.5 in one search."""
        overloaded = [
            step
            for step in self.steps
            if not step.discarded and not step.keeps_up and overload_held(step, tolerance)
        ]
        return max(overloaded, key=lambda step: step.summary.throughput_rps, default=None)

    def saturation(
        self, sat_lo: float | None, tolerance: float
    ) -> tuple[float | None, float | None, str | None]:
        """(answered, offered, how) of the saturation throughput: the more of what the highest
        rate that kept up answered ("kept up") and the most a step under overload answered
        ("overload"). A work-conserving server keeps up in the long run with any rate below
        what it answers under sustained overload; a step's verdict alone underrates one whose
        speed grows with its queue (a batching one), whose queue takes longer to build than a
        step lasts."""
        answered, offered = self.rates_at(sat_lo)
        how = None if answered is None else "kept up"
        overload = self.fastest_overload(tolerance)
        if overload is not None and (
            answered is None or overload.summary.throughput_rps > answered
        ):
            answered = overload.summary.throughput_rps
            offered = overload.summary.offered_rate_rps
            how = "overload"
        return answered, offered, how

    def answers(self, calibration: CalibrationSettings) -> dict[str, Any]:
        sat_lo, sat_hi = bracket(self.steps, keeps_up_at)
        slo_lo, slo_hi = slo_bracket(self.steps, calibration.slo_p99_ms)
        saturation_rps, saturation_offered_rps, saturation_from = self.saturation(
            sat_lo, calibration.achieved_rate_tolerance
        )
        capacity_rps, capacity_offered_rps = (
            (None, None) if self.unattainable else self.rates_at(slo_lo)
        )
        unloaded = _array(sorted(self.unloaded_ms))
        notes = list(self.notes)
        capacity_requests = None
        if capacity_rps is not None:
            capacity_requests = self.requests_at(slo_lo)
            if quantile_ci_ranks(capacity_requests, 0.99, 0.95) is None:
                notes.append(
                    f"the SLO verdict at the capacity rests on {capacity_requests} requests, too "
                    "few for a distribution-free 95% interval of their p99: an optimistic "
                    "estimate (raise calibration.slo_verdict_requests; docs/analysis.md)"
                )
        return {
            "saturation_rps": saturation_rps,
            "saturation_offered_rps": saturation_offered_rps,
            "saturation_bracket_rps": [sat_lo, sat_hi],
            "saturation_from": saturation_from,
            "capacity_rps": capacity_rps,
            "capacity_offered_rps": capacity_offered_rps,
            "capacity_bracket_rps": [None, None] if self.unattainable else [slo_lo, slo_hi],
            "capacity_confirmed": self.confirmed,
            # The measured requests of the steps at the capacity's rate (its precision).
            "capacity_requests": capacity_requests,
            "capacity_unattainable": self.unattainable,
            "slo_p99_ms": calibration.slo_p99_ms,
            "unloaded_requests": len(unloaded),
            "unloaded_p50_ms": quantile(unloaded, 0.5) if len(unloaded) else None,
            "unloaded_p99_ms": quantile(unloaded, 0.99) if len(unloaded) else None,
            # Response times alone on the server, in arrival order: the service-time sample
            # of the queueing reference (servebench.analysis.queueing).
            "unloaded_ms": [round(value, 3) for value in self.unloaded_ms],
            "steps_run": len(self.steps),
            "search_s": round(self.search_s, 1),
            "notes": notes,
        }


class Searcher:
    """The search against one server (see the module's docstring), step by step: the tuning
    stage uses its steps one at a time (servebench.jobs.tune); `search()` runs it all. Step
    folders go under `out_dir`."""

    def __init__(
        self,
        url: str,
        payloads_path: str | Path,
        calibration: CalibrationSettings,
        generator: LoadgenSettings,
        out_dir: Path,
        *,
        seed: int,
        measured_cpus: tuple[int, ...] = (),
        server_alive: Callable[[], bool] = lambda: True,
        body_template: str = DEFAULT_BODY_TEMPLATE,
        foreign_cpu_max_percent: float = 100.0,
        headers: dict[str, str] | None = None,
        deadline_monotonic: float | None = None,
    ) -> None:
        self.url = url
        # No step starts after this time.monotonic() (the tuning stage's budget): the answers
        # are then the brackets measured so far, with a note.
        self.deadline_monotonic = deadline_monotonic
        self.headers = headers  # sent with every request: probes and steps (-H)
        self.payloads_path = payloads_path
        self.calibration = calibration
        self.generator = generator
        self.out_dir = out_dir
        self.seed = seed
        self.measured_cpus = measured_cpus
        self.server_alive = server_alive
        self.body_template = body_template
        self.foreign_cpu_max_percent = foreign_cpu_max_percent
        self.result = SearchResult()
        self.bodies = [render_body(body_template, text) for text in read_texts(payloads_path)]
        self.target = url.rstrip("/") + generator.endpoint
        self.started = time.monotonic()
        self.unloaded_p50_ms: float | None = None
        self.idle_ms = 0.0

    def probe_unloaded(self) -> float:
        """A few requests one after another (after two that warm the server up): the unloaded
        p50 service time in ms, which the search starts from."""
        calibration, result = self.calibration, self.result
        count = calibration.unloaded_requests
        probe = sequential_latencies_ms(
            self.target, self.bodies, count + 2, cpus=self.generator.cpus, headers=self.headers
        )
        result.unloaded_ms = [value for value in probe[2:] if value is not None]
        if len(result.unloaded_ms) < count / 2:
            raise RuntimeError(
                f"{self.target} answered only {len(result.unloaded_ms)} of {count} sequential "
                "requests: no calibration possible"
            )
        unloaded = _array(sorted(result.unloaded_ms))
        p50_ms, p99_ms = quantile(unloaded, 0.5), quantile(unloaded, 0.99)
        self.unloaded_p50_ms = p50_ms
        self.idle_ms = max(2.0 * p99_ms, p50_ms + 20.0)
        log.info("unloaded: p50 %.1f ms, p99 %.1f ms over %d requests", p50_ms, p99_ms, count)
        if p99_ms > calibration.slo_p99_ms:
            result.unattainable = (
                f"unattainable: the unloaded p99 is {p99_ms:.4g} ms > SLO "
                f"{calibration.slo_p99_ms:g} ms ({len(unloaded)} requests one at a time)"
            )
        return p50_ms

    def step_seed(self, rate: float) -> int:
        """The seed of the next step at `rate`: the k-th step at a rate draws the k-th stream
        of that rate, whatever the steps before it. Two searches that step through the same
        rates (their ramps start on the same power of `ramp_factor`: search) draw the same
        arrivals and payloads at each: common random numbers, so that the tuning's
        configurations, and the study's calibration of the one it chose, differ in their
        verdicts by the server, not by which bursts their schedules held. Within a search,
        every rate and every repeat draws a stream of its own."""
        earlier = sum(1 for step in self.result.steps if step.rate_rps == rate)
        return derived_seed(self.seed, "calibration", f"{rate:.6g}", earlier)

    def step(self, rate: float, phase: str) -> Step:
        """One step at `rate`; a step whose measurement failed is kept, discarded and run again
        (at most MAX_REMEASURES times; step_discarded)."""
        for attempt in range(1, MAX_REMEASURES + 1):
            step = self._measure(rate, phase, last_try=attempt == MAX_REMEASURES)
            if not step.discarded:
                break
            log.warning("step %d discarded (%s): measuring again", step.index, step.reasons)
        return step

    def _measure(self, rate: float, phase: str, last_try: bool = True) -> Step:
        calibration, result = self.calibration, self.result
        index = len(result.steps)
        seed = self.step_seed(rate)
        # The step's seeded Poisson stream, scaled so that its measured part offers `rate`
        # (a bracket of nominal rates whose steps offered +-10 % is no bracket).
        schedule_rate_rps, duration_s = rate_realizing(
            rate,
            requests=calibration.min_step_requests,
            min_measured_s=calibration.min_step_duration_s,
            after_s=calibration.step_warmup_s,
            arrival="exponential",
            seed=seed,
        )
        started = time.monotonic()
        summary = measured_loadtest(
            self.measured_cpus,
            self.foreign_cpu_max_percent,
            calibration.min_step_requests,
            host=self.url,
            out_dir=self.out_dir / f"step{index}",
            seed=seed,
            arrival="exponential",
            rate_rps=schedule_rate_rps,
            duration_s=duration_s,
            warmup_s=calibration.step_warmup_s,
            payloads=self.payloads_path,
            generator=self.generator,
            body_template=self.body_template,
            headers=self.headers,
            # A search runs many short steps: Locust's own reports of each cost ~2 s.
            locust_reports=False,
        )
        server_alive = self.server_alive()
        keeps_up, meets_slo, reasons = judge_step(summary, calibration, server_alive)
        discarded = step_discarded(
            summary,
            calibration.min_step_requests,
            self.foreign_cpu_max_percent,
            last_try,
            held_overload=holds_overload(
                summary, server_alive, calibration.achieved_rate_tolerance
            ),
        )
        requests_path = self.out_dir / f"step{index}" / REQUESTS
        latencies = None
        if requests_path.is_file():
            requests = pd.read_parquet(
                requests_path, columns=["latency_ms", "outcome", "in_warmup"]
            )
            latencies = all_request_latencies_ms(requests[~requests["in_warmup"]])
        step = Step(
            index,
            phase,
            rate,
            summary,
            keeps_up,
            meets_slo,
            reasons,
            time.monotonic() - started,
            discarded,
            latencies,
        )
        result.steps.append(step)
        log.info(
            "step %d (%s): offered %.3g req/s, answered %.3g, p99(all) %s: %s",
            index,
            phase,
            rate,
            summary.throughput_rps or 0.0,
            "-" if summary.latency_all_p99_ms is None else f"{summary.latency_all_p99_ms:.1f} ms",
            "meets the SLO" if meets_slo else ("keeps up" if keeps_up else "; ".join(reasons)),
        )
        if not keeps_up:
            wait_until_idle(
                self.target,
                self.bodies,
                self.idle_ms,
                cpus=self.generator.cpus,
                headers=self.headers,
            )
        return step

    def _budget_left(self) -> bool:
        result, max_steps = self.result, self.calibration.max_steps
        deadline = self.deadline_monotonic
        if deadline is not None and time.monotonic() >= deadline:
            if not result.stopped_at_deadline:
                result.stopped_at_deadline = True
                result.notes.append(
                    f"the search stopped at its time budget after {len(result.steps)} steps"
                )
            return False
        if len(result.steps) < max_steps:
            return True
        if not any("max_steps" in note for note in result.notes):
            result.notes.append(
                f"the search stopped after calibration.max_steps = {max_steps} steps"
            )
        return False

    def _slo_bracket(self) -> tuple[float | None, float | None]:
        return slo_bracket(self.result.steps, self.calibration.slo_p99_ms)

    def _saturation_bracket(self) -> tuple[float | None, float | None]:
        return bracket(self.result.steps, keeps_up_at)

    def _bisect(
        self,
        bracket_now: Callable[[], tuple[float | None, float | None]],
        phase: str,
        top: float | None = None,
    ) -> None:
        while self._budget_left():
            lo, hi = bracket_now()
            if top is not None and (hi is None or top < hi):
                hi = top
            if lo is None or hi is None or hi / lo <= 1.0 + self.calibration.bracket_precision:
                return
            self.step(math.sqrt(lo * hi), phase)

    def _confirm_ends(self) -> bool:
        """Repeat both ends of the SLO bracket: the answer (lo) and, when it failed on the SLO
        alone, the first rate above it (hi; one unlucky step there would otherwise cap the
        answer), each at least once and until its steps hold `slo_verdict_requests` measured
        requests: the two verdicts that decide the answer rest on the most requests, the
        steps far from it on min_step_requests. True when both verdicts stand with the
        repeats' requests pooled in."""
        lo, hi = self._slo_bracket()
        if lo is None:
            return False
        for rate in (lo, hi):
            if rate is None:
                continue
            if rate == hi and not keeps_up_at(self.result.at_rate(rate)):
                continue  # a failure to keep up is no p99's noise
            while self._needs_repeat(rate):
                if not self._budget_left():
                    return False
                self.step(rate, "confirm")
                if self._slo_bracket() != (lo, hi):
                    return False
        return True

    def _needs_repeat(self, rate: float) -> bool:
        result = self.result
        return (
            len(result.at_rate(rate)) < 2
            or result.requests_at(rate) < self.calibration.slo_verdict_requests
        )

    def _slo_floor(self, first_rps: float) -> tuple[float, str]:
        """The lowest rate the SLO's downward search tries, and why: a fraction of the
        saturation throughput (below it the tail is the service time's own, not queueing's,
        and a step of min_step_requests takes ever longer), else of the first step's rate."""
        fraction = self.calibration.slo_min_utilization
        saturation_lo = self._saturation_bracket()[0]
        if saturation_lo is not None:
            return fraction * saturation_lo, (
                f"calibration.slo_min_utilization {fraction:g} of saturation "
                f"{saturation_lo:.3g} req/s"
            )
        return first_rps * LOWEST_RATE_FRACTION, "no step kept up"

    def _slo_attainable(self, first_rps: float) -> bool:
        """Whether some rate meets the SLO, measuring one step at the floor (_slo_floor) when
        none does and none was measured there: the longest step of the search, instead of a
        descent of ever longer ones to it. False, with the answer "unattainable" and down to
        which rate, when even the floor does not (or when the answer is already known)."""
        result = self.result
        if result.unattainable is not None:
            return False
        if self._slo_bracket()[0] is not None:
            return True
        floor_rps, floor_why = self._slo_floor(first_rps)
        if min(steps_by_rate(result.steps), default=math.inf) > floor_rps * (1.0 + 1e-9):
            if not self._budget_left():
                return False
            self.step(floor_rps, "slo")
            if self._slo_bracket()[0] is not None:
                return True
        lowest = min(steps_by_rate(result.steps), default=floor_rps)
        result.unattainable = (
            f"unattainable: no step met p99 <= {self.calibration.slo_p99_ms:g} ms down to "
            f"{lowest:.3g} req/s ({floor_why})"
        )
        return False

    def search(self) -> SearchResult:
        """Both answers: ramp, bisect the saturation bracket, then the SLO's, and confirm (the
        steps already measured count)."""
        calibration, result = self.calibration, self.result
        p50_ms = self.unloaded_p50_ms or self.probe_unloaded()
        steps = result.steps
        # Ramp up to the first step that does not keep up (down, when even the first does not),
        # from the power of ramp_factor nearest start_utilization of the unloaded speed: on
        # one grid of rates for every search (step_seed).
        first = grid_rate(calibration.start_utilization * 1000.0 / p50_ms, calibration.ramp_factor)
        while self._budget_left():
            lo, hi = bracket(steps, keeps_up_at)
            if lo is not None and hi is not None:
                break
            if hi is None:
                rate = first if lo is None else lo * calibration.ramp_factor
            else:
                rate = hi / calibration.ramp_factor
                if rate < first * LOWEST_RATE_FRACTION:
                    result.notes.append(f"no step kept up down to {rate:.3g} req/s")
                    break
            self.step(rate, "ramp")
        self._bisect(self._saturation_bracket, "saturation")
        # The SLO: whenever no rate meets it (no step did, or a repeat failed the lowest that
        # had), the floor decides whether it is attainable at all; then bisect and confirm.
        for _ in range(MAX_CONFIRMATIONS):
            if not self._slo_attainable(first):
                break
            self._bisect(self._slo_bracket, "slo", top=self._saturation_bracket()[1])
            if self._confirm_ends():
                result.confirmed = True
                break
            if not self._budget_left():
                break
        if result.unattainable is None and not result.confirmed:
            # The bracket within its precision all the same.
            self._bisect(self._slo_bracket, "slo", top=self._saturation_bracket()[1])
            if self._slo_bracket()[0] is None:
                result.unattainable = (
                    f"unattainable: no rate met p99 <= {calibration.slo_p99_ms:g} ms twice"
                )
        result.search_s = time.monotonic() - self.started
        return result


def search_capacity(
    url: str,
    payloads_path: str | Path,
    calibration: CalibrationSettings,
    generator: LoadgenSettings,
    out_dir: Path,
    **options: Any,
) -> SearchResult:
    """The whole search against `url` + the generator's endpoint (see Searcher)."""
    return Searcher(url, payloads_path, calibration, generator, out_dir, **options).search()


def _array(values: list[float]) -> Any:
    import numpy as np

    return np.array(values, dtype=float)


def write_calibration(
    result: SearchResult, calibration: CalibrationSettings, out_dir: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """steps.csv and capacity.json of a search; returns capacity.json's content."""
    import pandas as pd

    columns = list(Step(0, "", 1.0, RunSummary(), False, False, [], 0.0).row())
    rows = [step.row() for step in result.steps]
    pd.DataFrame(rows, columns=columns).to_csv(out_dir / STEPS, index=False)
    answers = {**extra, **result.answers(calibration)}
    write_json(out_dir / CAPACITY, answers)
    return answers


def calibrate(
    config: dict[str, Any],
    variant: str,
    bento_record_path: str | Path | None,
    payloads_path: str | Path,
    out_dir: str | Path,
) -> dict[str, Any]:
    """The study's calibration of one variant: deploy it, search, tear down; writes steps.csv,
    capacity.json and step<i>/ folders. `bento_record_path`: None on the external target."""
    out = Path(out_dir)
    clear_dir(out)
    calibration = CalibrationSettings.of(config)
    generator = LoadgenSettings.of(config)
    target = deploy_target(config, variant)
    record = deployment_record(config, variant, bento_record_path)
    extra = {"variant": variant, "target": target.name, "bento_tag": record["tag"]}
    if record.get("url"):
        extra["url"] = record["url"]
    ceiling = CeilingBeside.of(config, record, payloads_path)
    try:
        ceiling.measure("before")
        with deployed(target, record, out) as deployment:
            result = search_capacity(
                deployment.url,
                payloads_path,
                calibration,
                generator,
                out,
                seed=config["seed"],
                measured_cpus=target.cpus + generator.cpus,
                server_alive=deployment.alive,
                foreign_cpu_max_percent=config["measurement"]["foreign_cpu_max_percent"],
            )
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a failed calibration is data: the study says why
        log.error("calibration of %s failed: %s\n%s", variant, error, traceback.format_exc())
        result = SearchResult(notes=[f"calibration failed: {type(error).__name__}: {error}"])
    ceiling.measure("after")
    if ceiling.record is not None:
        extra["ceiling"] = ceiling.record
    return write_calibration(result, calibration, out, extra)


@dataclass
class CeilingBeside:
    """The in-process ceiling of the variant's runtime measured again right before and right
    after its search, on the server's cores with no server running: the model stage's best
    strategy (`model_stage`, records.inprocess_ceiling), its cell of the bench run again. The
    serving efficiency then divides two measurements of the same minutes: this machine's
    speed drifted by 10-20 % within hours (INT8's ceiling 84.7, 76.0 and 67.5 texts/s in the
    model stages of studies at 11:08, 13:48 and 16:19 on one day), more than the efficiency's
    own margin. `record`: capacity.json's `ceiling`; None where nothing is measured."""

    runtime_dir: Path
    model_stage: Ceiling | None
    payloads_path: str | Path
    bench_config: dict[str, Any]
    cpus: tuple[int, ...]
    record: dict[str, Any] | None = None

    @classmethod
    def of(
        cls, config: dict[str, Any], record: dict[str, Any], payloads_path: str | Path
    ) -> CeilingBeside:
        cpus = tuple(config["cpus"]["server"])
        runtime_dir = Path(record.get("runtime_dir") or ".")
        # Only where the Bento's runtime is served on this machine's server cores.
        served_here = config["deploy"]["target"] in ("local", "docker") and record.get(
            "runtime_dir"
        )
        model_stage = (
            inprocess_ceiling(runtime_dir / INPROCESS_BENCH, len(cpus)) if served_here else None
        )
        beside = cls(
            runtime_dir, model_stage, payloads_path, config["model"]["inprocess_bench"], cpus
        )
        if model_stage is not None:
            beside.record = {
                "runtime": model_stage.runtime,
                "strategy": model_stage.strategy,
                "model_stage_texts_per_s": model_stage.texts_per_s,
            }
        return beside

    def measure(self, when: str) -> None:
        """One measurement (`when`: before | after); a failure is a note, not the search's."""
        if self.model_stage is None:
            return
        try:
            texts_per_s = ceiling_cell_texts_per_s(
                self.runtime_dir,
                self.payloads_path,
                self.model_stage,
                bench_config=self.bench_config,
                cpus=self.cpus,
            )
        except Exception as error:  # the search's answers stand without it
            log.error("the in-process ceiling %s the search failed: %s", when, error)
            self.record[f"{when}_error"] = f"{type(error).__name__}: {error}"
            return
        log.info("in-process ceiling %s the search: %.2f texts/s", when, texts_per_s)
        self.record[f"{when}_texts_per_s"] = texts_per_s
        measured = [self.record.get(key) for key in ("before_texts_per_s", "after_texts_per_s")]
        self.record["texts_per_s"] = float(np.mean([v for v in measured if v is not None]))
