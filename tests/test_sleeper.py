"""The open-loop sender's clock (servebench.loadgen.sleeper), in a process of its own (gevent)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

# 200 sleeps as the sender does them, then 20 whose timerfd event is lost (the watcher looks at a
# pipe that never becomes readable, as when libev drops the event): only the backup can end them.
SCRIPT = r"""
import json, os
import gevent
from servebench.loadgen.sleeper import PreciseSleeper, clock

sleeper = PreciseSleeper()
early = 0
for i in range(200):
    deadline = clock() + 0.0005 + (i % 7) * 0.0003
    sleeper.sleep_until(deadline)
    early += clock() < deadline
backups_when_kept = sleeper.backup_wakeups
read_end, _ = os.pipe()
sleeper._watcher = sleeper._hub.loop.io(read_end, 1)
ended = 0
with gevent.Timeout(10, False):
    for i in range(20):
        deadline = clock() + 0.002
        sleeper.sleep_until(deadline)
        early += clock() < deadline
        ended += 1
print(json.dumps({
    "timerfd": sleeper.fd >= 0,
    "early": early,
    "backups_when_kept": backups_when_kept,
    "ended_when_lost": ended,
    "backups_when_lost": sleeper.backup_wakeups - backups_when_kept,
}))
"""


def test_a_lost_timer_event_delays_a_send_by_the_backup_only_and_none_is_early():
    """Seen in studies: libev now and then lost the timerfd's event and the sender slept until
    the next answer (150 ms), every send due meanwhile going out at once."""
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=True
    )
    result = json.loads(done.stdout)
    if not result["timerfd"]:
        pytest.skip("no timerfd here: the sender sleeps with gevent.sleep")
    assert result["early"] == 0, result
    assert result["ended_when_lost"] == 20, result
    assert result["backups_when_lost"] == 20, result
