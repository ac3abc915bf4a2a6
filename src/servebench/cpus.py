"""CPU-core lists: parse `0`, `0,2`, `0-3`, `0-1,4` and check them against this process's cores.

Server and load generator are pinned to different cores; both parse their lists here and turn
the ValueError into their own error type.
"""

from __future__ import annotations

import os
from collections.abc import Sequence


def parse_cpus(text: str) -> list[int]:
    """`0`, `0,2`, `0-3`, `0-1,4` -> sorted core numbers (ValueError on anything else)."""
    cores: set[int] = set()
    for part in str(text).split(","):
        part = part.strip()
        if not part:
            continue
        try:
            if "-" in part:
                first, last = (int(value) for value in part.split("-", 1))
                if first > last:
                    raise ValueError
                cores.update(range(first, last + 1))
            else:
                cores.add(int(part))
        except ValueError:
            raise ValueError(f"bad CPU list {text!r}: use e.g. 0 or 0,2 or 0-3") from None
    if not cores or min(cores) < 0:
        raise ValueError(f"bad CPU list {text!r}: use e.g. 0 or 0,2 or 0-3")
    return sorted(cores)


def check_cpus(cpus: Sequence[int]) -> list[int]:
    """The cores, sorted, after checking that this process may run on them (ValueError if not)."""
    available = sorted(os.sched_getaffinity(0))
    missing = sorted(set(cpus) - set(available))
    if missing:
        raise ValueError(f"CPU cores {missing} are not available here (available: {available})")
    return sorted(set(cpus))
