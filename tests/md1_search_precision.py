"""How precise the calibration search's capacity at the SLO is on the simulated M/D/1 queue of
tests/test_calibration.py (SimulatedMD1Searcher), for a step size and the requests the ends
of the SLO bracket are repeated to: the percentiles of capacity / truth over seeded searches
and the share within 0.90-1.05 x. docs/analysis.md quotes its output.

    .venv/bin/python tests/md1_search_precision.py --step-requests 800 --verdict-requests 6400
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
    SimulatedMD1Searcher,
    fifo_calibration,
    md1_slo_capacity,
)

from servebench.settings import LoadgenSettings  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step-requests", type=int, default=800)
    parser.add_argument("--verdict-requests", type=int, default=6400)
    parser.add_argument("--searches", type=int, default=300)
    args = parser.parse_args()
    calibration = dataclasses.replace(
        fifo_calibration(),
        min_step_requests=args.step_requests,
        slo_verdict_requests=args.verdict_requests,
    )
    truth = md1_slo_capacity(SLO_MS / 1000, SERVICE_MS / 1000)
    fractions, measured_s, confirmed = [], [], []
    with tempfile.TemporaryDirectory() as folder:
        payloads = Path(folder) / "payloads.csv"
        payloads.write_text("text\nhello\n")
        for seed in range(args.searches):
            searcher = SimulatedMD1Searcher(
                "http://127.0.0.1:9", payloads, calibration, LoadgenSettings.with_defaults(),
                Path(folder), seed=seed,
            )  # fmt: skip
            searcher.unloaded_p50_ms = float(np.random.default_rng(seed).uniform(5.2, 6.0))
            answers = searcher.search().answers(calibration)
            fractions.append(answers["capacity_rps"] / truth)
            confirmed.append(answers["capacity_confirmed"])
            measured_s.append(sum(step.duration_s for step in searcher.result.steps))
    fractions = np.array(fractions)
    low, high = CAPACITY_BOUNDS
    inside = np.mean((fractions >= low) & (fractions <= high))
    percentiles = np.percentile(fractions, [1, 50, 99]).round(3)
    print(
        f"steps of {args.step_requests}, ends to {args.verdict_requests}, {args.searches} "
        f"searches: 1st/50th/99th percentile {' / '.join(map(str, percentiles))} x, "
        f"{inside:.1%} within {low}-{high} x, {np.mean(confirmed):.1%} confirmed, "
        f"median {np.median(measured_s):.0f} measured s a search"
    )


if __name__ == "__main__":
    main()
