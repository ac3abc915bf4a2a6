"""How precise the calibration search's capacity at the SLO is on the simulated M/D/1 queue of
tests/test_calibration.py (SimulatedMD1Searcher), for a step size and the requests the ends
of the SLO bracket are repeated to: the percentiles of capacity / truth over seeded searches
and the share within 0.90-1.05 x. With --paired, each seed is searched twice from unloaded
p50s drawn apart (as two searches of one server start): the percentiles of the second
capacity / the first, and the share at least 0.95 x. --seed-by position seeds each step by
its place in the search, as before common random numbers (Searcher.step_seed);
--second-verdict-requests repeats the second search's ends to another total (the tuning's
search, then the study's calibration of the same server). docs/analysis.md and docs/tuning.md
quote its output.

    .venv/bin/python tests/md1_search_precision.py --step-requests 800 --verdict-requests 6400
    .venv/bin/python tests/md1_search_precision.py --step-requests 200 --verdict-requests 800 \
        --searches 200 --paired --seed-by position
    .venv/bin/python tests/md1_search_precision.py --step-requests 200 --verdict-requests 400 \
        --searches 200 --paired --second-verdict-requests 800
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

from test_calibration import (  # noqa: E402
    CAPACITY_BOUNDS,
    SERVICE_MS,
    SLO_MS,
    SeededByPosition,
    SimulatedMD1Searcher,
    fifo_calibration,
    md1_slo_capacity,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-requests", type=int, default=800)
    parser.add_argument("--verdict-requests", type=int, default=6400)
    parser.add_argument("--searches", type=int, default=300)
    parser.add_argument("--paired", action="store_true", help="two searches a seed")
    parser.add_argument("--seed-by", choices=("rate", "position"), default="rate")
    parser.add_argument(
        "--second-verdict-requests", type=int, help="the paired second search's (default: same)"
    )
    args = parser.parse_args()
    calibration = dataclasses.replace(
        fifo_calibration(),
        min_step_requests=args.step_requests,
        slo_verdict_requests=args.verdict_requests,
    )
    second = dataclasses.replace(
        calibration, slo_verdict_requests=args.second_verdict_requests or args.verdict_requests
    )
    truth = md1_slo_capacity(SLO_MS / 1000, SERVICE_MS / 1000)
    searcher_class = SimulatedMD1Searcher if args.seed_by == "rate" else SeededByPosition
    fractions, measured_s, confirmed, ratios = [], [], [], []
    with tempfile.TemporaryDirectory() as folder:
        for seed in range(args.searches):
            draws = np.random.default_rng(seed).uniform(5.2, 6.0, 2 if args.paired else 1)
            searchers = [
                searcher_class.searched(Path(folder), settings, seed, float(p50_ms))
                for settings, p50_ms in zip((calibration, second), draws, strict=False)
            ]
            answers = [searcher.result.answers(calibration) for searcher in searchers]
            fractions.append(answers[0]["capacity_rps"] / truth)
            confirmed.append(answers[0]["capacity_confirmed"])
            measured_s.append(sum(step.duration_s for step in searchers[0].result.steps))
            if args.paired:
                ratios.append(answers[1]["capacity_rps"] / answers[0]["capacity_rps"])
    fractions = np.array(fractions)
    low, high = CAPACITY_BOUNDS
    inside = np.mean((fractions >= low) & (fractions <= high))
    percentiles = np.percentile(fractions, [1, 50, 99]).round(3)
    print(
        f"steps of {args.step_requests}, ends to {args.verdict_requests}, {args.searches} "
        f"searches seeded by {args.seed_by}: 1st/50th/99th percentile "
        f"{' / '.join(map(str, percentiles))} x, {inside:.1%} within {low}-{high} x, "
        f"{np.mean(confirmed):.1%} confirmed, median {np.median(measured_s):.0f} measured s a "
        "search"
    )
    if args.paired:
        ratios = np.array(ratios)
        paired = np.percentile(ratios, [1, 50, 99]).round(3)
        print(
            f"second search (ends to {second.slo_verdict_requests}) / first, same seed: "
            "1st/50th/99th percentile "
            f"{' / '.join(map(str, paired))} x, {np.mean(ratios >= 0.95):.1%} at least 0.95 x"
        )


if __name__ == "__main__":
    main()
