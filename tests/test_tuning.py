"""The tuning stage's search (servebench.jobs.tune) against configurations whose capacities are
known, its equivalences and Pareto front, and the length-sorted in-process strategy. The stage
on real Bentos runs in the tiny study (tests/test_workflow_reruns.py, `make smoke`)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from servebench.analysis.tables import pareto_front
from servebench.bento import variant_settings
from servebench.config import load_config
from servebench.errors import UserError
from servebench.jobs import tune as tuning
from servebench.model.bench import length_sorted_sample
from servebench.records import inprocess_ceiling
from servebench.settings import batching_dispatcher

PRECISION = 0.05


def true_capacity(settings: dict) -> float:
    """A made-up service whose best configuration is known: onnx-int8, adaptive batching with
    the shortest latency budget and batches of 16 in sub-batches of 4, gc.freeze on (greedy
    batching gains nothing at the SLO here: its batches are small at such rates)."""
    capacity = {"onnx-int8": 40.0, "onnx": 15.0, "pytorch": 8.0}[settings["runtime"]]
    batching = settings["batching"]
    if batching["enabled"]:
        if batching["dispatcher"] == "adaptive":
            capacity *= 1.25 if batching["max_latency_ms"] <= 50 else 0.8
        capacity *= 1.1 if batching["max_batch_size"] == 16 else 1.0
        capacity *= 1.1 if settings["sub_batch_size"] == 4 else 1.0
    if settings["gc_freeze"]:
        capacity *= 1.08
    return capacity


def fake_measure(
    tuner,
    trial,
    *,
    screen=False,
    screen_rate=None,
    race_rate=None,
    beat_rate=None,
    common_rate=None,
    cut_at_budget=False,
    chosen=False,
):
    """The real Tuner.measure's contract without a server: the screen predicts the capacity
    (20% low for a batching configuration, whose gain an unloaded probe cannot see) and its
    loaded step's p99 is lower the higher the capacity; a failed race bounds the capacity; a
    passed one below `beat_rate` ties (its capacity within the incumbent's bracket); beyond it
    (or with no race) the search measures it within the bracket, unless it is a neighbour's
    past the budget (`cut_at_budget`: its search cut short)."""
    capacity = true_capacity(trial.settings)
    trial.measured_s += 1.0
    if screen:
        trial.mg1_capacity_rps = capacity * (0.8 if trial.settings["batching"]["enabled"] else 1)
        trial.screen_rate_rps = screen_rate or trial.mg1_capacity_rps
        trial.screen_p99_ms = 200.0 * trial.screen_rate_rps / capacity
        return trial
    if race_rate is not None and capacity < race_rate:
        trial.below_rps = race_rate
    elif race_rate is not None and beat_rate is not None and capacity < beat_rate:
        trial.capacity_low_rps, trial.capacity_high_rps = race_rate, beat_rate
        trial.below_rps = beat_rate
    elif race_rate is not None and cut_at_budget and tuner._spent():
        trial.outcome = "unsearched"
    else:
        trial.capacity_rps = capacity
        trial.capacity_low_rps = capacity / (1 + PRECISION / 2)
        trial.capacity_high_rps = capacity * (1 + PRECISION / 2)
        trial.saturation_rps = capacity * 1.2
    trial.common_rate_rps = common_rate or trial.capacity_low_rps * (1 + PRECISION)
    trial.common_p50_ms = 1000.0 / capacity
    return trial


@pytest.fixture
def tuner_of(tmp_path, monkeypatch):
    monkeypatch.setattr(tuning.Tuner, "measure", fake_measure)

    def make(**overrides) -> tuning.Tuner:
        config = load_config()
        config["calibration"]["bracket_precision"] = PRECISION
        config["tuning"].update(overrides)
        records = {
            runtime: {"settings": {"variant": f"tuning-{runtime}", "runtime": runtime}}
            for runtime in ("onnx-int8", "onnx", "pytorch")
        }
        return tuning.Tuner(config, records, tmp_path / "payloads.csv", tmp_path, {})

    return make


def test_the_race_finds_the_known_best_configuration(tuner_of, tmp_path):
    tuner = tuner_of(budget_s=3600)
    tuned = tuner.run([])
    best = max(
        (trial for trial in tuner.trials if trial.capacity_rps is not None),
        key=lambda trial: trial.capacity_rps,
    )
    assert tuned["settings"]["runtime"] == "onnx-int8"
    assert tuned["settings"]["batching"]["enabled"] is True
    assert tuned["settings"]["batching"]["max_latency_ms"] == 50  # 0.25 x the 200 ms SLO
    assert tuned["settings"]["batching"]["max_batch_size"] == 16
    assert tuned["settings"]["sub_batch_size"] == 4
    assert tuned["settings"]["gc_freeze"] is True
    assert tuned["provenance"]["capacity_rps"] == pytest.approx(best.capacity_rps)
    assert true_capacity(tuned["settings"]) == pytest.approx(40 * 1.25 * 1.1 * 1.1 * 1.08)
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert list(table["outcome"]).count("chosen") == 1
    # Every compared ablation variant was raced; none beats the chosen configuration (a loser's
    # capacity is below the rate it failed at, the incumbent's plus the bracket's precision).
    compared = table[table["role"] == "compared"]
    assert len(compared) == 3
    chosen = tuned["provenance"]["capacity_rps"]
    for _, trial in compared.iterrows():
        bound = trial["capacity_rps"] if trial["outcome"] != "lost" else trial["capacity_below_rps"]
        assert bound <= chosen * (1 + PRECISION)
    # The first round was screened at one rate, the variant as written's M/G/1 capacity; it
    # met the SLO there and was searched first (not the highest M/G/1 capacity: batching's
    # gain is unseen unloaded), then beaten; the two PyTorch ones failed it.
    first_round = table[table["role"].isin(["start", "compared"])]
    as_written = table[table["role"] == "start"].iloc[0]
    assert (first_round["screen_rate_rps"] == as_written["mg1_capacity_rps"]).all()
    assert table.iloc[0]["trial"] == as_written["trial"] == "t00"
    assert as_written["mg1_capacity_rps"] < first_round["mg1_capacity_rps"].max()
    assert as_written["outcome"] == "beaten"
    assert (first_round["screen_p99_ms"] > 200).sum() == 2


def test_the_first_round_configurations_that_meet_the_slo_at_the_screen_rate_come_first(
    tuner_of, tmp_path, monkeypatch
):
    """The variant as written failing the SLO at the screen rate and a compared variant
    meeting it, the compared one is searched first (and the variant as written loses its
    race at one step)."""

    def as_written_fails_its_screen(tuner, trial, **options):
        fake_measure(tuner, trial, **options)
        if options.get("screen") and trial.name == "t00":
            trial.screen_p99_ms = 250.0
        return trial

    monkeypatch.setattr(tuning.Tuner, "measure", as_written_fails_its_screen)
    monkeypatch.setitem(
        globals(),
        "true_capacity",
        lambda settings: 30.0 if settings["batching"]["enabled"] else 40.0,
    )
    tuner_of(budget_s=0.5).run([])
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert table.iloc[0]["note"].startswith("variant:ablation-runtime"), table
    as_written = table[table["trial"] == "t00"].iloc[0]
    assert as_written["outcome"] == "lost" and as_written["capacity_below_rps"] > 0
    # The race is cheaper than a grid: losers are bounded, not searched.
    assert table["capacity_rps"].isna().sum() >= len(table) // 2
    # No configuration was tried twice.
    assert not table["configuration"].duplicated().any()


def test_a_spent_budget_stops_the_search_and_says_so(tuner_of, tmp_path, monkeypatch):
    clock = iter(range(0, 10_000, 100))  # every reading of the clock 100 s later
    monkeypatch.setattr(tuning, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    tuner = tuner_of(budget_s=250)
    tuner.run([])
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert len(table) < 6
    chosen = table[table["outcome"] == "chosen"].iloc[0]
    assert "budget spent" in chosen["note"]
    # The first round (the variant as written and the 3 ablations) is measured all the same
    # past the budget: every one is searched or bounded by its race; no neighbour starts past
    # the budget.
    first_round = table[table["role"].isin(["start", "compared"])]
    assert len(first_round) == 4
    assert first_round["mg1_capacity_rps"].notna().all()
    decided = first_round["capacity_rps"].notna() | first_round["capacity_below_rps"].notna()
    assert decided.all(), first_round
    assert (table["role"] == "neighbour").sum() == 0


def test_a_first_round_challenger_past_the_budget_is_raced_to_its_answer(
    tuner_of, tmp_path, monkeypatch
):
    """Past the budget, a compared variant that meets the SLO at the incumbent's capacity is
    raced at the incumbent's first failing rate all the same: failing there, it ties (the p50
    decides); meeting it, it is searched whole and wins. So the tuned variant is at least as
    good as every compared one; no neighbour starts past the budget."""
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(tuning, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    best = variant_settings(load_config(), "ablation-deployment")
    monkeypatch.setitem(
        globals(), "true_capacity", lambda settings: 40.0 if settings == best else 30.0
    )

    def misordering_screen(tuner, trial, **options):
        fake_measure(tuner, trial, **options)
        if options.get("screen"):  # all meet the SLO there: the config's order
            trial.screen_p99_ms = 150.0 if trial.settings == best else 100.0
        return trial

    monkeypatch.setattr(tuning.Tuner, "measure", misordering_screen)
    tuner = tuner_of(budget_s=50)  # spent once the first incumbent is searched
    tuned = tuner.run([])
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert not (table["outcome"] == "unsearched").any(), table
    first_round = table[table["role"].isin(["start", "compared"])]
    assert len(first_round) == 4 and (table["role"] == "neighbour").sum() == 0
    ties = first_round[first_round["capacity_rps"].isna()]
    assert len(ties) == 2, table  # met the incumbent's capacity, failed beyond: a tie each
    assert (ties["capacity_bracket_low_rps"] == table.iloc[0]["capacity_bracket_low_rps"]).all()
    assert (ties["capacity_below_rps"] == table.iloc[0]["capacity_bracket_high_rps"]).all()
    chosen = table[table["outcome"] == "chosen"].iloc[0]
    assert chosen["note"].startswith("variant:ablation-deployment"), chosen
    assert chosen["capacity_rps"] == 40.0
    assert tuned["settings"]["runtime"] == best["runtime"]


def test_a_tie_goes_to_the_lower_p50_at_the_common_rate(tuner_of):
    tuner = tuner_of()
    incumbent = tuning.Trial("a", "start", {}, capacity_rps=30, capacity_low_rps=30)
    incumbent.common_p50_ms = 20.0
    within = tuning.Trial("b", "neighbour", {}, capacity_rps=30.5, capacity_low_rps=30.5)
    within.common_p50_ms = 25.0
    assert not tuner._beats(within, incumbent)
    within.common_p50_ms = 15.0
    assert tuner._beats(within, incumbent)
    above = tuning.Trial("c", "neighbour", {}, capacity_rps=32, capacity_low_rps=32)
    above.common_p50_ms = 99.0
    assert tuner._beats(above, incumbent)
    # p50s alike within the bracket's precision: the higher saturation throughput wins.
    incumbent.saturation_rps = 37.0
    alike = tuning.Trial("d", "neighbour", {}, capacity_rps=30, capacity_low_rps=30)
    alike.common_p50_ms = 20.5
    alike.saturation_rps = 50.0
    assert tuner._beats(alike, incumbent)
    alike.saturation_rps = 37.5  # within the precision too: the incumbent stays
    assert not tuner._beats(alike, incumbent)
    alike.saturation_rps = None  # not measured: the incumbent stays
    assert not tuner._beats(alike, incumbent)


def test_configurations_that_serve_alike_are_one():
    config = load_config()
    base = variant_settings(config, "ablation-runtime")  # onnx-int8, threads 0, no batching
    one_thread = {**base, "threads_per_worker": 1}
    assert tuning.knobs(base, 1) == tuning.knobs(one_thread, 1)
    assert tuning.knobs(base, 2) != tuning.knobs(one_thread, 2)
    # Without adaptive batching the batcher's knobs and the sub-batch size do nothing.
    other = json.loads(json.dumps(base))
    other["batching"]["max_batch_size"] = 4
    other["sub_batch_size"] = 4
    assert tuning.knobs(base, 1) == tuning.knobs(other, 1)
    # The greedy batcher never waits: its latency budget does nothing; its batch size does.
    greedy = json.loads(json.dumps(base))
    greedy["batching"].update(enabled=True, dispatcher="greedy", max_batch_size=64)
    slower = json.loads(json.dumps(greedy))
    slower["batching"]["max_latency_ms"] = 50
    assert tuning.knobs(greedy, 1) == tuning.knobs(slower, 1)
    smaller = json.loads(json.dumps(greedy))
    smaller["batching"]["max_batch_size"] = 16
    assert tuning.knobs(greedy, 1) != tuning.knobs(smaller, 1)
    adaptive = json.loads(json.dumps(greedy))
    adaptive["batching"]["dispatcher"] = "adaptive"
    assert tuning.knobs(greedy, 1) != tuning.knobs(adaptive, 1)
    assert tuning.label(greedy).startswith("onnx-int8 greedy16-64 ")
    fewer = json.loads(json.dumps(greedy))
    fewer["batching"]["min_batch_size"] = 1
    assert tuning.knobs(greedy, 1) != tuning.knobs(fewer, 1)
    # PyTorch's default thread count is not one per core.
    torch_default = {**base, "runtime": "pytorch"}
    assert tuning.knobs(torch_default, 1) != tuning.knobs(
        {**torch_default, "threads_per_worker": 1}, 1
    )


def test_neighbours_change_one_knob_and_fit_the_cores():
    config = load_config()
    settings = tuning.TuningSettings.of(config)
    start = variant_settings(config, "optimized")
    found = tuning.neighbours(start, settings, ["onnx-int8", "onnx"], 2, 200.0)
    keys = {tuning.knobs(candidate, 2) for candidate in found}
    assert len(keys) == len(found) and tuning.knobs(start, 2) not in keys
    for candidate in found:
        assert candidate["workers"] * max(candidate["threads_per_worker"], 1) <= 2
        changed = [
            key
            for key in ("runtime", "batching", "sub_batch_size", "gc_freeze")
            if candidate[key] != start[key]
        ]
        assert len(changed) <= 1 or candidate["workers"] != start["workers"]
    # From greedy batching (config.yaml's optimized): off, and adaptive with the shortest
    # latency budget, are one knob away.
    assert start["batching"]["dispatcher"] == "greedy"
    dispatchers = {batching_dispatcher(candidate["batching"]) for candidate in found}
    assert dispatchers == {"off", "greedy", "adaptive"}
    adaptive = [c for c in found if batching_dispatcher(c["batching"]) == "adaptive"]
    assert [c["batching"]["max_latency_ms"] for c in adaptive] == [50]  # 0.25 x the SLO


def test_pareto_front():
    capacity = [10.0, 20.0, 20.0, 15.0, float("nan")]
    p50 = [5.0, 9.0, 12.0, 4.0, 1.0]
    assert pareto_front(capacity, p50) == [False, True, False, True, False]


def test_length_sorted_sample_keeps_the_length_distribution():
    texts = [f"{'x' * (index % 97)}" for index in range(1000)]
    sample = length_sorted_sample(texts, 100)
    lengths = [len(text) for text in sample]
    assert len(sample) == 100 and lengths == sorted(lengths)
    mean_all = sum(len(text) for text in texts) / len(texts)
    assert abs(sum(lengths) / len(lengths) - mean_all) < 0.02 * mean_all
    assert length_sorted_sample(texts[:10], 100) == sorted(texts[:10], key=len)


def test_the_ceiling_is_the_best_strategy_within_the_cores(tmp_path):
    path = tmp_path / "inprocess_bench.csv"
    pd.DataFrame(
        [
            {
                "runtime": "onnx-int8",
                "order": "payload",
                "batch_size": 1,
                "threads": 1,
                "sequences_per_s": 40.0,
            },
            {
                "runtime": "onnx-int8",
                "order": "sorted",
                "batch_size": 4,
                "threads": 1,
                "sequences_per_s": 52.0,
            },
            {
                "runtime": "onnx-int8",
                "order": "sorted",
                "batch_size": 4,
                "threads": 2,
                "sequences_per_s": 90.0,
            },
        ]
    ).to_csv(path, index=False)
    ceiling = inprocess_ceiling(path, 1)
    assert ceiling.texts_per_s == 52.0
    assert ceiling.strategy == "length-sorted batches of 4, 1 thread"
    assert inprocess_ceiling(path, 2).texts_per_s == 90.0
    assert inprocess_ceiling(tmp_path / "absent.csv", 1) is None


def test_building_the_tuned_variant_needs_the_tuning_result(tmp_path):
    config = load_config()
    config["results_dir"] = str(tmp_path)
    with pytest.raises(UserError, match="servebench tune"):
        tuning.tuned_settings(config, "optimized")
    assert tuning.tuned_settings(config, "baseline") is None
    config["tuning"]["pin"] = True
    assert tuning.tuned_settings(config, "optimized") is None
    config["tuning"]["pin"] = False
    (tmp_path / "tuning").mkdir()
    settings = variant_settings(config, "ablation-runtime")
    (tmp_path / "tuning" / "tuned.json").write_text(json.dumps({"settings": settings}))
    assert tuning.tuned_settings(config, "optimized") == settings


@pytest.mark.parametrize(
    ("target", "tuned"), [("local", True), ("docker", True), ("k3s", False), ("external", False)]
)
def test_the_stage_tunes_the_variant_served_on_this_machines_server_cores(target, tuned):
    """local and docker serve the same Bento on the same pinned cores, so the docker study's
    image is built from the tuned Bento too (not the variant as written, which would compare
    another configuration with the local study's); k3s runs elsewhere."""
    config = load_config()
    config = {**config, "deploy": {**config["deploy"], "target": target}}
    assert tuning.TuningSettings.of(config).tunes(config) is tuned
    disabled = {**config, "tuning": {**config["tuning"], "enabled": False}}
    assert not tuning.TuningSettings.of(disabled).tunes(disabled)


def unattainable_measure(
    tuner, trial, *, screen=False, screen_rate=None, race_rate=None, common_rate=None, **_
):
    """A CPU on which no configuration meets the SLO at any rate (its service-time tail alone
    exceeds it): the whole search answers saturation only, a race step fails the SLO, and the
    p50 at the common rate is known (lowest: onnx-int8 without batching, gc.freeze on)."""
    settings = trial.settings
    trial.measured_s += 1.0
    if screen:
        trial.mg1_capacity_rps = None
        trial.screen_rate_rps = screen_rate or 1.0
        trial.screen_p99_ms = None  # some request not ok
        return trial
    p50_ms = {"onnx-int8": 50.0, "onnx": 80.0, "pytorch": 120.0}[settings["runtime"]]
    if batching_dispatcher(settings["batching"]) == "adaptive":
        p50_ms += 0.2 * settings["batching"]["max_latency_ms"]
    elif settings["batching"]["enabled"]:
        p50_ms += 10.0
    if settings["gc_freeze"]:
        p50_ms -= 5.0  # beyond the bracket's precision: p50s within it would be alike
    if race_rate is None:
        trial.searched = True  # the whole search: the SLO unattainable
        trial.saturation_rps = 1000.0 / p50_ms
        common_rate = common_rate or 0.5 * trial.saturation_rps
    else:
        trial.below_rps = race_rate
    trial.common_rate_rps = common_rate
    trial.common_p50_ms = p50_ms
    return trial


def test_with_the_slo_unattainable_everywhere_the_lower_p50_wins_at_one_step_each(
    tuner_of, tmp_path, monkeypatch
):
    monkeypatch.setattr(tuning.Tuner, "measure", unattainable_measure)
    tuner = tuner_of(budget_s=3600)
    tuned = tuner.run([])
    assert tuned["settings"]["runtime"] == "onnx-int8"
    assert tuned["settings"]["batching"]["enabled"] is False
    assert tuned["settings"]["gc_freeze"] is True
    # Only the first incumbent and the chosen configuration (a tie's winner, searched once
    # chosen) were searched; every challenger raced at the common rate.
    searched = [trial for trial in tuner.trials if getattr(trial, "searched", False)]
    assert len(searched) == 2 and searched[1].outcome == "chosen", tuner.trials
    assert searched[1].saturation_rps > 0
    common = searched[0].common_rate_rps
    assert searched[1].common_rate_rps == common
    challengers = [
        trial for trial in tuner.trials if trial is not searched[0] and trial.common_p50_ms
    ]
    assert len(challengers) >= 4
    assert all(trial.below_rps == common for trial in challengers)
    table = pd.read_csv(tmp_path / "tuning.csv")
    assert list(table["outcome"]).count("chosen") == 1
    assert not table["configuration"].duplicated().any()


def search_answers(capacity_rps: float, bracket_rps: list[float]):
    """A stand-in for SearchResult.answers: a whole search's answers (saturation 40 req/s)."""
    return lambda calibration: {
        "saturation_rps": 40.0,
        "capacity_rps": capacity_rps,
        "capacity_bracket_rps": bracket_rps,
        "capacity_unattainable": None,
        "notes": [],
    }


def test_a_challenger_whose_search_the_budget_cut_is_not_chosen(tuner_of):
    """A neighbour that met the SLO at its race step and whose search then reached the
    budget ties on a few steps at best: it is `unsearched`, has no capacity and is never the
    new incumbent."""
    from servebench.jobs.calibrate import SearchResult
    from servebench.records import RunSummary

    tuner = tuner_of()
    race = SimpleNamespace(
        meets_slo=True, summary=RunSummary(latency_p50_ms=10.0, latency_all_p99_ms=50.0)
    )
    result = SearchResult(stopped_at_deadline=True)
    result.answers = search_answers(28.4, [28.1, 29.5])
    searcher = SimpleNamespace(step=lambda rate, phase: race, search=lambda: result, result=result)
    trial = tuning.Trial("t01", "neighbour", variant_settings(load_config(), "optimized"))
    tuner._race_and_search(trial, searcher, 20.0, None, 20.0)
    assert trial.outcome == "unsearched"
    assert trial.capacity_rps is None
    assert "cut short (28.4 req/s)" in trial.note
    assert not tuner._beats(
        trial, tuning.Trial("t00", "start", {}, capacity_rps=20.0, capacity_low_rps=20.0)
    )


@pytest.mark.parametrize(("slow_per_step", "meets"), [(0, True), (1, True), (3, False)])
def test_the_beat_steps_pool_the_verdict_requests(tuner_of, slow_per_step, meets):
    """A challenger's steps at the incumbent's beat rate go on until they hold
    calibration.slo_verdict_requests requests (800: 8 steps of 100), and their pooled p99
    decides: 1 slow request in 100 (8 in 800) is within the p99, 3 in 100 are not."""
    from servebench.jobs.calibrate import Step
    from servebench.records import RunSummary

    tuner = tuner_of()
    taken = []

    def step(rate, phase):
        latencies = np.sort(np.r_[np.full(100 - slow_per_step, 50.0), [500.0] * slow_per_step])
        taken.append(phase)
        summary = RunSummary(counts={"ok": 100})
        return Step(len(taken), phase, rate, summary, True, True, [], 1.0, False, latencies)

    assert tuner._meets_slo_at(SimpleNamespace(step=step), 25.0) is meets
    assert taken == ["beat"] * 8


def _tie_with_the_variant_as_written(monkeypatch):
    """A clock that moves 100 s a call, and `ablation-runtime` (returned) within the bracket
    of the variant as written (40.4 against 40.0 req/s; everything else 20)."""
    clock = iter(range(0, 10_000, 100))
    monkeypatch.setattr(tuning, "time", SimpleNamespace(monotonic=lambda: float(next(clock))))
    tie = variant_settings(load_config(), "ablation-runtime")
    as_written = variant_settings(load_config(), "optimized")
    monkeypatch.setitem(
        globals(),
        "true_capacity",
        lambda settings: 40.4 if settings == tie else 40.0 if settings == as_written else 20.0,
    )
    return tie


def test_a_tie_won_on_the_p50_is_searched_whole_once_chosen(tuner_of, tmp_path, monkeypatch):
    """A compared variant within the incumbent's bracket (a tie, not searched) with the lower
    p50 is chosen: it then gets its whole search, past the budget too, so tuning.csv and
    tuned.json quote its saturation throughput and capacity (the tiny study in CI at 70ac0f0
    chose one without them)."""
    tie = _tie_with_the_variant_as_written(monkeypatch)
    calls = []

    def faster_tie(tuner, trial, **options):
        fake_measure(tuner, trial, **options)
        calls.append((trial.name, options.get("chosen", False)))
        if trial.settings == tie and trial.common_p50_ms is not None:
            trial.common_p50_ms = 10.0  # well below the incumbent's 25 ms
        return trial

    monkeypatch.setattr(tuning.Tuner, "measure", faster_tie)
    tuned = tuner_of(budget_s=50).run([])
    table = pd.read_csv(tmp_path / "tuning.csv")
    chosen = table[table["outcome"] == "chosen"].iloc[0]
    assert chosen["note"].startswith("variant:ablation-runtime"), table
    assert "searched whole once chosen" in chosen["note"]
    assert chosen["capacity_rps"] == 40.4 and chosen["saturation_rps"] > 0
    assert tuned["provenance"]["capacity_rps"] == 40.4
    assert tuned["provenance"]["saturation_rps"] > 0
    assert [name for name, whole in calls if whole] == [chosen["trial"]]


def test_a_tie_refuted_by_its_whole_search_gives_the_choice_back(tuner_of, tmp_path, monkeypatch):
    """A tie's winner whose whole search, once chosen, gives a capacity below the best one
    searched whole (beyond half the bracket's precision) is not chosen: that one is."""
    tie = _tie_with_the_variant_as_written(monkeypatch)

    def refuted_tie(tuner, trial, **options):
        fake_measure(tuner, trial, **options)
        if trial.settings == tie and trial.common_p50_ms is not None:
            trial.common_p50_ms = 10.0  # well below the incumbent's 25 ms: wins the tie
        if options.get("chosen"):  # its own search then finds less than the incumbent's
            trial.capacity_rps = trial.capacity_low_rps = 36.0
        return trial

    monkeypatch.setattr(tuning.Tuner, "measure", refuted_tie)
    tuned = tuner_of(budget_s=50).run([])
    table = pd.read_csv(tmp_path / "tuning.csv").set_index("trial")
    chosen = table[table["outcome"] == "chosen"]
    assert list(chosen["note"].str.slice(0, 10)) == ["as written"], table
    refuted = table[table["note"].str.contains("refuted the tie", na=False)].iloc[0]
    assert refuted["outcome"] == "lost" and refuted["capacity_rps"] == 36.0
    assert "capacity 36 req/s against t00's 40" in refuted["note"]
    assert tuned["provenance"]["capacity_rps"] == chosen["capacity_rps"].iloc[0]


def test_the_first_incumbents_p50_at_the_common_rate_is_its_first_step_there(tuner_of):
    """The first incumbent's p50 at the common rate (its capacity's lower bracket) is that of
    its first step there, which drew the stream each challenger's first step there draws: no
    step after the search (a later stream, unpaired)."""
    from servebench.jobs.calibrate import SearchResult, Step
    from servebench.records import RunSummary

    tuner = tuner_of()
    result = SearchResult()
    taken = []

    def step(rate, phase, p50_ms=40.0):
        summary = RunSummary(latency_p50_ms=p50_ms, latency_all_p99_ms=150.0)
        taken.append(phase)
        measured = Step(len(taken), phase, rate, summary, True, True, [], 1.0, False, None)
        result.steps.append(measured)
        return measured

    def search():
        for p50_ms in (42.7, 38.7, 45.7):  # three steps at 20.0 req/s, first one first
            step(20.0, "slo", p50_ms)
        step(21.0, "slo")
        return result

    result.answers = search_answers(20.0, [20.0, 21.0])
    searcher = SimpleNamespace(step=step, search=search, result=result)
    trial = tuning.Trial("t00", "start", variant_settings(load_config(), "optimized"))
    tuner._race_and_search(trial, searcher, None, None, None)
    assert taken == ["slo"] * 4  # no common step
    assert trial.common_rate_rps == 20.0 and trial.common_p50_ms == 42.7
