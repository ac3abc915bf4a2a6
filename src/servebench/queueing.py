"""A queueing-theory reference for a served variant: M/G/1.

From a variant's measured service times (its calibration's unloaded probe: requests sent one
after another, so none waits; capacity.json's `unloaded_ms`), the p99 response time of one FIFO server under Poisson arrivals at each
offered rate, by simulation (Lindley's recursion W_{n+1} = max(0, W_n + S_n - A_{n+1}) with
service times resampled from the measurement), and the rate at which that p99 reaches the SLO.
Measured capacity over predicted says how much the serving machinery (HTTP, batching, the
event loop) costs beyond the model's own service time; a batching server is not M/G/1, so it
is a reference, not a model of it.
"""

from __future__ import annotations

import math

import numpy as np

from servebench.quantiles import quantile


def mg1_p99_ms(
    service_ms: np.ndarray, rate_rps: float, *, requests: int = 50_000, seed: int = 0
) -> float:
    """p99 response time (wait + service) of an M/G/1 queue at `rate_rps` (inf when the
    server's utilization is 1 or more)."""
    service_s = np.asarray(service_ms, dtype=float) / 1000.0
    service_s = service_s[np.isfinite(service_s)]
    if not len(service_s) or rate_rps * service_s.mean() >= 1.0:
        return math.inf
    rng = np.random.default_rng(seed)
    services = rng.choice(service_s, size=requests)
    gaps = rng.exponential(1.0 / rate_rps, size=requests)
    waits = np.empty(requests)
    wait = 0.0
    for index in range(requests):
        waits[index] = wait
        wait = max(0.0, wait + services[index] - gaps[index])
    response_ms = np.sort((waits + services)[requests // 10 :]) * 1000.0  # past the start
    return quantile(response_ms, 0.99)


def mg1_capacity_rps(service_ms: np.ndarray, slo_p99_ms: float, *, seed: int = 0) -> float | None:
    """The arrival rate at which the M/G/1 p99 reaches the SLO (None when even an idle server's
    p99, the service time's own, exceeds it)."""
    service = np.asarray(service_ms, dtype=float)
    service = service[np.isfinite(service)]
    if not len(service) or quantile(np.sort(service), 0.99) > slo_p99_ms:
        return None
    low, high = 0.0, 1000.0 / service.mean()
    for _ in range(30):
        middle = (low + high) / 2
        if mg1_p99_ms(service, middle, seed=seed) <= slo_p99_ms:
            low = middle
        else:
            high = middle
    return low
