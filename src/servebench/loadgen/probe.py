"""Closed-loop probes: requests sent one after another, each after the previous answer.

What a calibration starts from (the unloaded service time) and what tells it that a server has
drained its queue after an overloaded step. The open-loop load itself is servebench.loadgen's
Locust run; this is plain http.client, pinned to the generator's cores.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import time
from collections.abc import Iterator, Sequence
from urllib.parse import urlsplit


def request_headers(json_body: bool, given: dict[str, str] | None = None) -> dict[str, str]:
    """The headers of every request: the JSON Content-Type when it has a body, then `given`
    (`-H`) over it (a header's name matches whatever its case)."""
    headers = {"Content-Type": "application/json"} if json_body else {}
    for name, value in (given or {}).items():
        for known in [key for key in headers if key.lower() == name.lower()]:
            del headers[known]
        headers[name] = value
    return headers


@contextlib.contextmanager
def _pinned(cpus: Sequence[int]) -> Iterator[None]:
    """This thread on `cpus` for the block (never on the server's cores)."""
    if not cpus:
        yield
        return
    previous = os.sched_getaffinity(0)
    os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, previous)


def sequential_latencies_ms(
    url: str,
    bodies: Sequence[str],
    count: int,
    *,
    method: str = "POST",
    timeout_s: float = 30.0,
    cpus: Sequence[int] = (),
    headers: dict[str, str] | None = None,
) -> list[float | None]:
    """Send `count` requests to `url` one at a time (bodies in turn); the latency of each, in
    milliseconds, or None for one that did not get a 2xx answer. `headers` go with every
    request, as the load generator sends them (request_headers)."""
    parts = urlsplit(url)
    path = parts.path or "/"
    headers = request_headers(bool(bodies), headers)
    connection_class = (
        http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    )
    latencies: list[float | None] = []
    with _pinned(cpus):
        connection = connection_class(parts.hostname, parts.port, timeout=timeout_s)
        try:
            for index in range(count):
                body = bodies[index % len(bodies)].encode("utf-8") if bodies else None
                started = time.perf_counter()
                try:
                    connection.request(method, path, body=body, headers=headers)
                    response = connection.getresponse()
                    response.read()
                    ok = 200 <= response.status < 300
                except (OSError, http.client.HTTPException):
                    connection.close()
                    ok = False
                elapsed_ms = (time.perf_counter() - started) * 1000.0
                latencies.append(elapsed_ms if ok else None)
        finally:
            connection.close()
    return latencies


def wait_until_idle(
    url: str,
    bodies: Sequence[str],
    idle_latency_ms: float,
    *,
    max_wait_s: float = 60.0,
    cpus: Sequence[int] = (),
    headers: dict[str, str] | None = None,
) -> float:
    """Probe until one request is answered within `idle_latency_ms` (the server has drained
    what an overloaded step left queued); returns the seconds waited (at most `max_wait_s`)."""
    started = time.monotonic()
    while time.monotonic() - started < max_wait_s:
        (latency,) = sequential_latencies_ms(
            url, bodies, 1, timeout_s=max_wait_s, cpus=cpus, headers=headers
        )
        if latency is not None and latency <= idle_latency_ms:
            break
        time.sleep(0.2)
    return time.monotonic() - started
