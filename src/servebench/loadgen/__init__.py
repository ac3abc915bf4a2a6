"""The open-loop load generator: Locust as a subprocess, sending a seeded schedule.

`run_loadtest(...)` runs one load test and returns its summary; `servebench loadtest` is the
same from the command line. Locust itself is never imported here (it monkey-patches the
process with gevent); attributes load lazily so that importing this package stays cheap.
"""

from __future__ import annotations

from typing import Any

__all__ = ["LoadTestError", "run_loadtest"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from servebench.loadgen import runner

        return getattr(runner, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
