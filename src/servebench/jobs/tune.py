"""The tuning stage: the service's knobs that give the highest capacity at the SLO on these cores.

Candidates are configurations of the one service (servebench.bento.VARIANT_KEYS): the runtime
(among those that passed the fidelity gate, pruned by their in-process ceiling), batching off,
adaptive (BentoML's) or greedy (the service's), its max_batch_size and max_latency_ms
(fractions of the SLO; adaptive only), the sorted sub-batch size, workers x intra-op threads
within the server's cores, gc.freeze. Each is served
from the Bento of its runtime with its settings given at start (the service reads its spec
from SERVEBENCH_VARIANT_SPEC), so trying one costs a server start, not a Bento build.

The search is a race, coordinate by coordinate from the best so far (the incumbent):
1. screen: the tuned variant as written and the config's `ablation-*` variants are served,
   probed unloaded (requests one at a time: the M/G/1 capacity at the SLO their service times
   predict, servebench.queueing) and given one step at a common screen rate (the variant as
   written's M/G/1 capacity), which draws the same arrivals for each (common random numbers);
   those that meet the SLO there come first, in the config's order (the variant as written
   first): unloaded service times alone see neither batching nor a collector's pauses (in
   the study at 350d001 the two predictions were 1.4 % apart), and one step's p99 is too
   noisy to rank two that both meet it;
2. the most promising one is the first incumbent: the calibration's whole search
   (servebench.jobs.calibrate.Searcher) measures its saturation throughput and capacity at
   the SLO; the common rate, at which every configuration's p50 and p99 are measured, is the
   highest rate at which it met the SLO (its capacity bracket's lower end);
3. every challenger (the rest of the first round, then every configuration one knob away
   from the incumbent) gets one step at that rate of the incumbent: failing the SLO there,
   its capacity is below the incumbent's and it loses at the cost of one step; meeting it,
   steps at the incumbent's beat rate (its bracket's upper end, where it failed the SLO) to
   the study's slo_verdict_requests: failing there, its capacity is within the incumbent's
   bracket, a tie, without a whole search; meeting it there too, the whole search measures
   it, and a higher capacity makes it the incumbent. A tie goes to the lower p50 at the
   common rate, and where the p50s are alike too, within the bracket's precision, to the
   higher saturation throughput (a tie not searched has none: the incumbent keeps it); the
   new incumbent's neighbours join the queue. When the incumbent met the SLO at no rate
   (unattainable: on a CPU whose service-time tail alone exceeds it), the race step is at
   the common rate: a challenger that meets the SLO there is searched and wins; one that
   fails it too ties, and the lower p50 at the common rate wins (one step each, not a whole
   search);
4. until the queue is empty or the time budget is spent. The budget bounds the neighbours:
   none starts past it, and a neighbour's search that reaches it is cut (`unsearched`, never
   chosen, no capacity). The first round is raced to its answer whatever the budget (its
   race and beat steps and, beating the incumbent, its whole search): the claim that the
   tuned variant is at least as good as each compared variant rests on it;
5. the chosen configuration, when it won a tie (never searched whole), gets its whole search,
   whatever the budget: its saturation throughput and capacity are what the study quotes. A
   capacity there below the best one searched whole (as `_beats` counts higher) refutes the
   tie, and that one is chosen instead.

Writes tuning.csv (every configuration tried, its knobs, answers, how long it was measured) and
tuned.json (the winner as a variant spec, with its provenance), which the workflow builds the
tuned variant's Bento from unless `tuning.pin` is set.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from servebench.bento import VARIANT_KEYS, build_bento, variant_settings
from servebench.deploy import deployed
from servebench.errors import UserError
from servebench.jobs.calibrate import Searcher, Step, slo_bracket
from servebench.jobs.common import clear_dir, read_json
from servebench.layout import INPROCESS_BENCH, TUNED, TUNING, Layout
from servebench.provenance import environment, write_json
from servebench.quantiles import quantile
from servebench.queueing import mg1_capacity_rps
from servebench.records import Ceiling, inprocess_ceiling
from servebench.settings import (
    COMPARED_PREFIX,
    CalibrationSettings,
    LoadgenSettings,
    LocalTarget,
    TuningSettings,
    batching_dispatcher,
    deploy_target,
)

log = logging.getLogger("servebench.jobs")

SPEC_ENV = "SERVEBENCH_VARIANT_SPEC"  # read by the service (services/sentiment)


def label(settings: dict[str, Any]) -> str:
    """A short name of a configuration, e.g. `onnx-int8 b16/50ms sub4 1x1 gc` (adaptive
    batching) or `onnx-int8 greedy16-64 sub4 1x1 gc no-telemetry` (greedy, from 16 to 64
    texts; no access-log line or tracing span per request)."""
    batching = settings["batching"]
    parts = [settings["runtime"]]
    dispatcher = batching_dispatcher(batching)
    if dispatcher == "greedy":
        parts.append(f"greedy{batching['min_batch_size']}-{batching['max_batch_size']}")
    elif dispatcher == "adaptive":
        parts.append(f"b{batching['max_batch_size']}/{batching['max_latency_ms']}ms")
    else:
        parts.append("nobatch")
    parts.append(f"sub{settings['sub_batch_size']}")
    parts.append(f"{settings['workers']}x{settings['threads_per_worker'] or 'auto'}")
    parts.append("gc" if settings["gc_freeze"] else "nogc")
    if not settings["request_telemetry"]:
        parts.append("no-telemetry")
    return " ".join(parts)


def knobs(settings: dict[str, Any], cores: int) -> str:
    """What a configuration does, as a comparable key: two settings with the same key serve
    alike (threads 0 is ONNX Runtime's one per core; without batching every request of the
    load is one text, so the batcher's knobs and the sub-batch size do nothing; the greedy
    batcher never waits, so max_latency_ms does nothing there)."""
    batching = settings["batching"]
    threads = settings["threads_per_worker"]
    if threads == 0 and settings["runtime"].startswith("onnx"):
        threads = max(1, cores // settings["workers"])
    dispatcher = batching_dispatcher(batching)
    effective = {
        "runtime": settings["runtime"],
        "batching": {
            "off": None,
            "greedy": ["greedy", batching["min_batch_size"], batching["max_batch_size"]],
            "adaptive": [batching["max_batch_size"], batching["max_latency_ms"]],
        }[dispatcher],
        "sub_batch_size": settings["sub_batch_size"] if batching["enabled"] else None,
        "workers": settings["workers"],
        "threads": threads,
        "gc_freeze": settings["gc_freeze"],
        "request_telemetry": settings["request_telemetry"],
    }
    return json.dumps(effective, sort_keys=True)


@dataclass
class Trial:
    """One configuration tried and what the race measured of it."""

    name: str
    role: str  # start | compared | neighbour
    settings: dict[str, Any]
    outcome: str = ""
    saturation_rps: float | None = None
    capacity_rps: float | None = None
    capacity_low_rps: float | None = None  # nominal bracket of the capacity (whole search)
    capacity_high_rps: float | None = None
    below_rps: float | None = None  # failed its race here: the capacity is below it
    common_rate_rps: float | None = None
    common_p50_ms: float | None = None
    common_p99_ms: float | None = None
    unloaded_p50_ms: float | None = None
    unloaded_p99_ms: float | None = None
    mg1_capacity_rps: float | None = None  # the screen's prediction (first round only)
    screen_rate_rps: float | None = None  # the screen's loaded step (first round only)
    screen_p99_ms: float | None = None  # its p99 over every request (None: some not ok)
    measured_s: float = 0.0
    note: str = ""
    steps: list[Step] = field(default_factory=list, repr=False)

    def add_note(self, *parts: str | None) -> None:
        """Append to the note (tuning.csv's `note`), `; `-separated, skipping empty parts."""
        self.note = "; ".join(filter(None, [self.note, *parts]))

    def row(self) -> dict[str, Any]:
        batching = self.settings["batching"]
        return {
            "trial": self.name,
            "role": self.role,
            "configuration": label(self.settings),
            "runtime": self.settings["runtime"],
            "batching": batching["enabled"],
            "dispatcher": batching_dispatcher(batching),
            "max_batch_size": batching["max_batch_size"],
            "min_batch_size": batching["min_batch_size"],
            "max_latency_ms": batching["max_latency_ms"],
            "sub_batch_size": self.settings["sub_batch_size"],
            "workers": self.settings["workers"],
            "threads_per_worker": self.settings["threads_per_worker"],
            "gc_freeze": self.settings["gc_freeze"],
            "request_telemetry": self.settings["request_telemetry"],
            "outcome": self.outcome,
            "saturation_rps": self.saturation_rps,
            "capacity_rps": self.capacity_rps,
            "capacity_bracket_low_rps": self.capacity_low_rps,
            "capacity_bracket_high_rps": self.capacity_high_rps,
            "capacity_below_rps": self.below_rps,
            "common_rate_rps": self.common_rate_rps,
            "common_p50_ms": self.common_p50_ms,
            "common_p99_ms": self.common_p99_ms,
            "unloaded_p50_ms": self.unloaded_p50_ms,
            "unloaded_p99_ms": self.unloaded_p99_ms,
            "mg1_capacity_rps": self.mg1_capacity_rps,
            "screen_rate_rps": self.screen_rate_rps,
            "screen_p99_ms": self.screen_p99_ms,
            "measured_s": round(self.measured_s, 1),
            "note": self.note,
        }


def neighbours(
    settings: dict[str, Any], tuning: TuningSettings, runtimes: list[str], cores: int, slo_ms: float
) -> list[dict[str, Any]]:
    """Every configuration one knob away from `settings`, most promising axes first."""
    batching = settings["batching"]
    found: list[dict[str, Any]] = []

    seen = {knobs(settings, cores)}

    def changed(**changes: Any) -> None:
        candidate = json.loads(json.dumps(settings))
        for key, value in changes.items():
            if key in ("enabled", "dispatcher", "max_batch_size", "max_latency_ms"):
                candidate["batching"][key] = value
            else:
                candidate[key] = value
        if knobs(candidate, cores) not in seen:
            seen.add(knobs(candidate, cores))
            found.append(candidate)

    for runtime in runtimes:
        changed(runtime=runtime)
    latencies = [max(1, round(fraction * slo_ms)) for fraction in tuning.max_latency_of_slo]
    dispatcher = batching_dispatcher(batching)
    if dispatcher != "off":
        changed(enabled=False)
        if dispatcher == "greedy":
            changed(dispatcher="adaptive", max_latency_ms=latencies[0])
        else:
            changed(dispatcher="greedy")
            for latency in latencies:
                changed(max_latency_ms=latency)
        for size in tuning.max_batch_sizes:
            changed(max_batch_size=size)
        for size in tuning.sub_batch_sizes:
            changed(sub_batch_size=size)
    else:
        for other in ("greedy", "adaptive"):
            changed(
                enabled=True,
                dispatcher=other,
                max_batch_size=max(tuning.max_batch_sizes),
                max_latency_ms=latencies[0],
                sub_batch_size=settings["sub_batch_size"] or max(tuning.sub_batch_sizes),
            )
    for workers, threads in itertools.product(range(1, cores + 1), range(1, cores + 1)):
        if workers * threads <= cores:
            changed(workers=workers, threads_per_worker=threads)
    changed(gc_freeze=not settings["gc_freeze"])
    changed(request_telemetry=not settings["request_telemetry"])
    return found


class Tuner:
    """The race (see the module's docstring) over one study's Bentos."""

    def __init__(
        self,
        config: dict[str, Any],
        records: dict[str, dict[str, Any]],
        payloads_path: str | Path,
        out_dir: Path,
        ceilings: dict[str, Ceiling],
    ) -> None:
        self.config = config
        self.tuning = TuningSettings.of(config)
        # Every step but the screen's is the study's calibration step: a search, a race or a
        # beat step at a rate then meets the same arrivals as the incumbent's steps there
        # and as the study's calibration of the chosen configuration (common random numbers;
        # a study at bfe5e03 searched with shorter steps: its calibration answered 0.849 x).
        self.calibration = CalibrationSettings.of(config)
        self.screen_calibration = dataclasses.replace(
            self.calibration, min_step_duration_s=self.tuning.probe_duration_s
        )
        self.generator = LoadgenSettings.of(config)
        self.target = tuning_target(config)
        self.records = records
        self.payloads_path = payloads_path
        self.out_dir = out_dir
        self.ceilings = ceilings
        self.trials: list[Trial] = []
        self.started = time.monotonic()

    def _spec(self, settings: dict[str, Any], folder: Path) -> Path:
        record = self.records[settings["runtime"]]
        spec = {**record["settings"], **settings, "variant": f"tuning-{folder.name}"}
        path = folder / "variant.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_json(path, spec)
        return path

    def measure(
        self,
        trial: Trial,
        *,
        screen: bool = False,
        screen_rate: float | None = None,
        race_rate: float | None = None,
        beat_rate: float | None = None,
        common_rate: float | None = None,
        cut_at_budget: bool = False,
        chosen: bool = False,
    ) -> Trial:
        """Serve the trial's configuration and measure it: its unloaded service times, then
        with `screen` the M/G/1 capacity they predict and one step at `screen_rate` (None: at
        that prediction); else one step at `race_rate` and, when it meets the SLO there, steps
        at `beat_rate` (the incumbent's lowest rate that failed it) to the study's verdict
        requests; when it meets it there too (or with no race yet: the first incumbent, whose
        answers set every race), the whole search, cut at the budget only with
        `cut_at_budget` (a neighbour); then its p50 and p99 at `common_rate`: from its first
        step there, or one step there. `chosen`: the whole search of a tie's winner, in a
        folder of its own."""
        started = time.monotonic()
        suffix = "-screen" if screen else "-chosen" if chosen else ""
        folder = self.out_dir / f"{trial.name}{suffix}"
        target = dataclasses.replace(
            self.target,
            environment=((SPEC_ENV, str(self._spec(trial.settings, folder).resolve())),),
        )
        measurement = self.config["measurement"]
        with deployed(target, self.records[trial.settings["runtime"]], folder) as deployment:
            searcher = Searcher(
                deployment.url,
                self.payloads_path,
                self.screen_calibration if screen else self.calibration,
                self.generator,
                folder,
                seed=self.config["seed"],
                measured_cpus=self.target.cpus + self.generator.cpus,
                server_alive=deployment.alive,
                foreign_cpu_max_percent=measurement["foreign_cpu_max_percent"],
                # The budget bounds a neighbour's search already started too (on a slow
                # machine one search at low rates can take longer than the whole budget). The
                # first round's are whole: the first incumbent's answers set every race (cut,
                # its capacity rested on a few hundred requests, a study at acd37bd: 342), and
                # the tuned variant is claimed at least as good as every compared variant.
                deadline_monotonic=(self.started + self.tuning.budget_s if cut_at_budget else None),
            )
            searcher.probe_unloaded()
            service_ms = np.array(searcher.result.unloaded_ms, dtype=float)
            trial.unloaded_p50_ms = float(np.median(service_ms))
            trial.unloaded_p99_ms = quantile(np.sort(service_ms), 0.99)
            if screen:
                self._screen(trial, searcher, service_ms, screen_rate)
            else:
                self._race_and_search(trial, searcher, race_rate, beat_rate, common_rate)
        trial.measured_s += time.monotonic() - started
        return trial

    def _screen(
        self,
        trial: Trial,
        searcher: Searcher,
        service_ms: np.ndarray,
        screen_rate: float | None,
    ) -> None:
        slo_ms = self.calibration.slo_p99_ms
        trial.mg1_capacity_rps = mg1_capacity_rps(service_ms, slo_ms)
        rate = screen_rate or trial.mg1_capacity_rps
        if rate is None:  # the unloaded p99 alone exceeds the SLO: the search's first rate
            rate = self.calibration.start_utilization * 1000.0 / trial.unloaded_p50_ms
        step = searcher.step(rate, "screen")
        trial.screen_rate_rps = rate
        trial.screen_p99_ms = step.summary.latency_all_p99_ms

    def _race_and_search(
        self,
        trial: Trial,
        searcher: Searcher,
        race_rate: float | None,
        beat_rate: float | None,
        common_rate: float | None,
    ) -> None:
        whole = race_rate is None
        if race_rate is not None:
            race = searcher.step(race_rate, "race")
            whole = race.meets_slo
            if not race.meets_slo:
                trial.below_rps = race_rate
            if common_rate is not None and math.isclose(race_rate, common_rate):
                self._common(trial, race, common_rate)
            if whole and beat_rate is not None:
                whole = self._meets_slo_at(searcher, beat_rate)
                if not whole:
                    # Within the incumbent's bracket: a tie on the objective, which the p50
                    # at the common rate decides (_beats); its whole search would only
                    # narrow a bracket the incumbent's already bounds.
                    trial.capacity_low_rps, trial.capacity_high_rps = race_rate, beat_rate
                    trial.below_rps = beat_rate
                    trial.add_note(
                        f"met the SLO at the incumbent's {race_rate:.4g} req/s, not at its "
                        f"{beat_rate:.4g}: a tie, not searched"
                    )
        if whole:
            result = searcher.search()
            answers = result.answers(self.calibration)
            trial.saturation_rps = answers["saturation_rps"]
            trial.capacity_rps = answers["capacity_rps"]
            trial.capacity_low_rps, trial.capacity_high_rps = answers["capacity_bracket_rps"]
            if result.stopped_at_deadline:
                # A search cut short is no evidence against the incumbent's whole one: its
                # bracket rests on a few steps (a study at 4ed113a: a challenger tied on 3
                # steps, 102 requests, and won on its p50); nor is it a capacity (a study at
                # 350d001: 28.4 req/s on 141 requests).
                trial.outcome = "unsearched"
                cut = f"{trial.capacity_rps:.4g} req/s" if trial.capacity_rps else "no answer"
                trial.capacity_rps = None
                answers["notes"].append(f"a search cut short ({cut}) is no capacity, not chosen")
            trial.add_note(answers["capacity_unattainable"], *answers["notes"])
        if common_rate is None:  # the first incumbent: the common rate is its race rate
            common_rate = self._race_rate(trial) or 0.5 * (trial.saturation_rps or 0.0)
        if common_rate > 0 and trial.common_p50_ms is None:
            # The first step at the common rate drew the stream each challenger's first step
            # there draws (common random numbers, Searcher.step_seed), so the p50s a tie is
            # broken on are paired; a step after the search would draw a later stream (in
            # the study at a7126a0 the first incumbent's 6th: p50 53.5 ms, its 1st 42.7).
            measured = searcher.result.at_rate(common_rate)
            step = measured[0] if measured else searcher.step(common_rate, "common")
            self._common(trial, step, common_rate)
        trial.steps = searcher.result.steps

    def _meets_slo(self, p99_ms: float | None) -> bool:
        """A p99 over every request (None: not every request ok) within the SLO."""
        return p99_ms is not None and p99_ms <= self.calibration.slo_p99_ms

    def _meets_slo_at(self, searcher: Searcher, rate: float) -> bool:
        """Steps at `rate` until they hold the study's slo_verdict_requests (as the
        incumbent's at its bracket's ends; with common random numbers, the same arrivals):
        whether their pooled p99 meets the SLO, every step keeping up."""
        steps: list[Step] = []
        while sum(step.summary.n_measured for step in steps) < (
            self.calibration.slo_verdict_requests
        ):
            step = searcher.step(rate, "beat")
            if step.discarded:
                return False  # measured again and still not measured: no evidence to beat
            steps.append(step)
            if not step.keeps_up:
                return False
        return slo_bracket(steps, self.calibration.slo_p99_ms)[0] is not None

    @staticmethod
    def _common(trial: Trial, step: Step, rate: float) -> None:
        trial.common_rate_rps = rate
        trial.common_p50_ms = step.summary.latency_p50_ms
        trial.common_p99_ms = step.summary.latency_all_p99_ms

    def _race_rate(self, incumbent: Trial) -> float | None:
        """The rate of a challenger's race step: the highest rate at which `incumbent` met the
        SLO (its bracket's lower end). Failing the SLO there, the challenger's capacity is below
        the incumbent's and it loses at the cost of one step; meeting it, it may beat or tie
        the incumbent, which only its whole search tells (_beats). When the incumbent met the
        SLO at no rate (unattainable), the common rate: meeting it there beats the incumbent;
        failing it there too is a tie, decided by the p50 at that rate."""
        if incumbent.capacity_low_rps is None:
            return incumbent.common_rate_rps
        return incumbent.capacity_low_rps

    def _spent(self) -> bool:
        return time.monotonic() - self.started > self.tuning.budget_s

    def run(self, pruned: list[Trial]) -> dict[str, Any]:
        """The race over every candidate served from `self.records` (one Bento per runtime);
        `pruned`: the configurations not served (recorded as they are)."""
        config, tuning = self.config, self.tuning
        cores = len(self.target.cpus) or 1
        slo_ms = self.calibration.slo_p99_ms
        self.trials += pruned
        runtimes = list(self.records)
        start = variant_settings(config, tuning.variant)
        if start["runtime"] not in self.records:
            best = max(runtimes, key=lambda runtime: self._ceiling(runtime))
            start = {**start, "runtime": best}
        # First round: the variant as written and the compared variants, screened at one rate
        # (the variant as written's M/G/1 capacity).
        first: list[Trial] = [Trial("t00", "start", start, note="as written")]
        tried = {knobs(start, cores)}
        for name in config["variants"]:
            settings = variant_settings(config, name)
            if not name.startswith(COMPARED_PREFIX) or settings["runtime"] not in self.records:
                continue
            if knobs(settings, cores) in tried:
                continue
            tried.add(knobs(settings, cores))
            first.append(Trial(f"t{len(first):02d}", "compared", settings, note=f"variant:{name}"))
        screen_rate = None
        for trial in first:
            self.measure(trial, screen=True, screen_rate=screen_rate)
            screen_rate = trial.screen_rate_rps
        # Those that met the SLO at the screen rate first, in the config's order (the variant
        # as written first): the p99 of one step is too noisy to rank two that both met it (a
        # study at 8c3229e: 96.9 and 125.9 ms at 24.1 req/s, the lower one's capacity
        # 0.88 x the other's).
        first.sort(key=lambda trial: not self._meets_slo(trial.screen_p99_ms))
        names = itertools.count(len(first))
        incumbent = self.measure(first[0], common_rate=None)
        incumbent.outcome = "first"
        self.trials.append(incumbent)
        common_rate = incumbent.common_rate_rps
        queue = [("", trial.role, trial.settings, trial) for trial in first[1:]]
        queue += [
            ("", "neighbour", candidate, None)
            for candidate in neighbours(incumbent.settings, tuning, runtimes, cores, slo_ms)
            if knobs(candidate, cores) not in tried
        ]
        budget_noted = False
        while queue:
            if self._spent():
                # The first round (the variant as written, the compared variants) is measured
                # whatever the budget: the claim that the tuned variant is at least as good as
                # each rests on it. Neighbours wait for budget.
                left = len({knobs(item[2], cores) for item in queue if item[3] is None} - tried)
                if left and not budget_noted:
                    spent = f"budget spent: {left} candidates not raced"
                    incumbent.add_note(spent)
                    budget_noted = True
                queue = [item for item in queue if item[3] is not None]
                if not queue:
                    break
            _, role, settings, trial = queue.pop(0)
            if trial is None:
                if knobs(settings, cores) in tried:
                    continue
                tried.add(knobs(settings, cores))
                trial = Trial(f"t{next(names):02d}", role, settings)
            self.measure(
                trial,
                race_rate=self._race_rate(incumbent),
                beat_rate=incumbent.capacity_high_rps if incumbent.capacity_low_rps else None,
                common_rate=common_rate,
                cut_at_budget=role == "neighbour",
            )
            self.trials.append(trial)
            if trial.outcome == "unsearched":
                continue
            if self._beats(trial, incumbent):
                trial.outcome = "won"
                incumbent.outcome = "beaten"
                incumbent = trial
                queue = [item for item in queue if item[3] is not None] + [
                    ("", "neighbour", candidate, None)
                    for candidate in neighbours(settings, tuning, runtimes, cores, slo_ms)
                    if knobs(candidate, cores) not in tried
                ]
            else:
                trial.outcome = "lost"
        if incumbent.saturation_rps is None:
            # A tie's winner, never searched whole: its saturation throughput and capacity are
            # what tuned.json, tuning.csv and the report quote of the chosen configuration
            # (the tiny study in CI at 70ac0f0 chose one without them), so it gets its whole
            # search, whatever the budget.
            self.measure(incumbent, common_rate=common_rate, chosen=True)
            incumbent.add_note("won a tie: searched whole once chosen")
            incumbent = self._after_whole_search(incumbent)
        for trial in self.trials:
            if trial is incumbent:
                trial.outcome = "chosen"
        return self._write(incumbent)

    def _after_whole_search(self, tie_winner: Trial) -> Trial:
        """The tie's winner, unless its whole search refuted the tie: a capacity below the
        best one searched whole, beyond half the bracket's precision (as `_beats` counts a
        higher capacity), gives the choice to that one (a study at 460c62e chose a tie's
        winner whose search then gave 45.29 req/s against 49.37)."""
        searched = [
            trial
            for trial in self.trials
            if trial is not tie_winner and trial.capacity_rps is not None
        ]
        best = max(searched, key=lambda trial: trial.capacity_low_rps or 0.0, default=None)
        if best is None or best.capacity_low_rps is None:
            return tie_winner
        if tie_winner.capacity_low_rps is not None and not self._higher_capacity(best, tie_winner):
            return tie_winner
        found = tie_winner.capacity_rps
        tie_winner.outcome = "lost"
        tie_winner.add_note(
            "its whole search refuted the tie: capacity "
            f"{'none' if found is None else f'{found:.4g} req/s'} against "
            f"{best.name}'s {best.capacity_rps:.4g}, which is chosen"
        )
        return best

    def _ceiling(self, runtime: str) -> float:
        ceiling = self.ceilings.get(runtime)
        return ceiling.texts_per_s if ceiling is not None else 0.0

    def _beats(self, trial: Trial, incumbent: Trial) -> bool:
        """A higher capacity at the SLO; within the bracket (a tie), or when neither met the
        SLO at any rate measured (the SLO unattainable), the tie-break."""
        if trial.capacity_low_rps is None:  # lost its race, or never met the SLO
            return incumbent.capacity_low_rps is None and self._wins_tie(trial, incumbent)
        if trial.capacity_rps is None:  # met the incumbent's capacity, not beyond: a tie
            return self._wins_tie(trial, incumbent)
        if incumbent.capacity_low_rps is None:
            return True
        if self._higher_capacity(trial, incumbent):
            return True
        precision = self.calibration.bracket_precision
        tie = trial.capacity_low_rps >= incumbent.capacity_low_rps / (1 + precision / 2)
        return tie and self._wins_tie(trial, incumbent)

    def _higher_capacity(self, trial: Trial, other: Trial) -> bool:
        """`trial`'s capacity beyond `other`'s by more than half the bracket's precision."""
        precision = self.calibration.bracket_precision
        return trial.capacity_low_rps > other.capacity_low_rps * (1 + precision / 2)

    def _wins_tie(self, trial: Trial, incumbent: Trial) -> bool:
        """The lower p50 at the common rate; where the two are alike (within the bracket's
        precision, about the p50's own sampling noise), the higher saturation throughput."""
        precision = self.calibration.bracket_precision
        p50_ms, incumbent_p50_ms = trial.common_p50_ms, incumbent.common_p50_ms
        if p50_ms is None or incumbent_p50_ms is None:
            return False
        if p50_ms < incumbent_p50_ms / (1 + precision):
            return True
        if p50_ms > incumbent_p50_ms * (1 + precision):
            return False
        saturation, incumbent_saturation = trial.saturation_rps, incumbent.saturation_rps
        if saturation is None or incumbent_saturation is None:
            return False
        return saturation > incumbent_saturation * (1 + precision / 2)

    def _write(self, winner: Trial) -> dict[str, Any]:
        import pandas as pd

        rows = [trial.row() for trial in self.trials]
        pd.DataFrame(rows).to_csv(self.out_dir / TUNING, index=False)
        env = environment()
        tuned = {
            "variant": self.tuning.variant,
            "pinned": self.tuning.pin,
            "settings": {key: winner.settings[key] for key in VARIANT_KEYS},
            "configuration": label(winner.settings),
            "provenance": {
                "trial": winner.name,
                "capacity_rps": winner.capacity_rps,
                "saturation_rps": winner.saturation_rps,
                "common_rate_rps": winner.common_rate_rps,
                "common_p50_ms": winner.common_p50_ms,
                "trials": len(self.trials),
                "elapsed_s": round(time.monotonic() - self.started, 1),
                "budget_s": self.tuning.budget_s,
                "slo_p99_ms": self.calibration.slo_p99_ms,
                "server_cpus": list(self.target.cpus),
                "ceilings": {
                    runtime: {"texts_per_s": c.texts_per_s, "strategy": c.strategy}
                    for runtime, c in self.ceilings.items()
                },
                "git_commit": env["git_commit"],
                "cpu": env["cpu"].get("model"),
            },
        }
        write_json(self.out_dir / TUNED, tuned)
        return tuned


def tune(
    config: dict[str, Any],
    runtime_dirs: dict[str, str | Path],
    payloads_path: str | Path,
    out_dir: str | Path,
    *,
    log_path: str | Path | None = None,
) -> dict[str, Any]:
    """The tuning stage: tuning.csv and tuned.json in `out_dir` (see the module's docstring).
    `runtime_dirs`: each candidate runtime's model directory (its provenance, fidelity verdict
    and in-process benchmark). Builds one Bento per runtime served (out_dir/bentos/)."""
    out = Path(out_dir)
    clear_dir(out)
    tuning = TuningSettings.of(config)
    target = tuning_target(config)
    cores = len(target.cpus) or 1
    ceilings = {
        runtime: ceiling
        for runtime, folder in runtime_dirs.items()
        if (ceiling := inprocess_ceiling(Path(folder) / INPROCESS_BENCH, cores)) is not None
    }
    best = max((ceiling.texts_per_s for ceiling in ceilings.values()), default=0.0)
    start = variant_settings(config, tuning.variant)
    compared = {
        name: variant_settings(config, name)
        for name in tuning.variants_of(config)
        if name.startswith(COMPARED_PREFIX)
    }
    served: list[str] = []
    pruned: list[Trial] = []
    for runtime in runtime_dirs:
        ceiling = ceilings.get(runtime)
        if ceiling is None or ceiling.texts_per_s >= tuning.runtime_ceiling_share * best:
            served.append(runtime)
            continue
        why = (
            f"in-process ceiling {ceiling.texts_per_s:.3g} texts/s ({ceiling.strategy}) < "
            f"{tuning.runtime_ceiling_share:g} x the best runtime's {best:.3g}: not served"
        )
        # A served capacity never exceeds the in-process ceiling: an upper bound, unmeasured.
        configurations = [("runtime", {**start, "runtime": runtime})] + [
            (f"variant:{name}", settings)
            for name, settings in compared.items()
            if settings["runtime"] == runtime
        ]
        for title, settings in configurations:
            role = "compared" if title.startswith("variant:") else "neighbour"
            trial = Trial(f"pruned-{len(pruned):02d}", role, settings, outcome="pruned")
            trial.below_rps = ceiling.texts_per_s
            trial.note = f"{title}: {why}" if role == "compared" else why
            pruned.append(trial)
    if not served:
        raise ValueError("tuning: no candidate runtime (tuning.runtimes / model.runtimes)")
    records = {}
    for runtime in served:
        log.info("tuning: the Bento of runtime %s", runtime)
        records[runtime] = build_bento(
            config,
            f"tuning-{runtime}",
            runtime_dirs[runtime],
            out / "bentos" / f"{runtime}.json",
            settings={**start, "runtime": runtime},
            log=log_path,
        )
    tuner = Tuner(config, records, payloads_path, out, ceilings)
    return tuner.run(pruned)


def tuning_target(config: dict[str, Any]) -> LocalTarget:
    """The tuning's server: `bentoml serve` on the server's cores (the local target's)."""
    target = deploy_target({**config, "deploy": {**config["deploy"], "target": "local"}})
    assert isinstance(target, LocalTarget)
    return target


def tuned_settings(config: dict[str, Any], variant: str) -> dict[str, Any] | None:
    """The tuning stage's settings (VARIANT_KEYS) for `variant`'s Bento, or None when the
    variant is built as written (not the tuned one, tuning off or pinned)."""
    tuning = TuningSettings.of(config)
    if variant != tuning.variant or tuning.pin or not tuning.tunes(config):
        return None
    path = Layout.of(config).tuning_dir / TUNED
    if not path.is_file():
        raise UserError(
            f"{path}: no tuning result for variant {variant} (run `servebench tune`, or set "
            "tuning.pin: true to build it as written)"
        )
    return read_json(path)["settings"]
