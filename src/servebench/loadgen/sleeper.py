"""The open-loop sender's clock: sleep until an absolute deadline, precisely, in gevent.

Imported by the Locust user (servebench.loadgen.locustfile), in Locust's own process: it imports
nothing but gevent and the standard library.
"""

from __future__ import annotations

import ctypes
import os
import time

import gevent
from gevent.hub import Waiter

clock = time.monotonic


class _itimerspec(ctypes.Structure):
    _fields_ = [
        ("interval_s", ctypes.c_long),
        ("interval_ns", ctypes.c_long),
        ("value_s", ctypes.c_long),
        ("value_ns", ctypes.c_long),
    ]


class PreciseSleeper:
    """Sleep until an absolute time.monotonic() deadline with ~0.1 ms precision, yielding to
    other greenlets. gevent's own timers round every wait up to a whole millisecond (the epoll
    timeout), which quantizes sends to a 1 ms grid and distorts interarrivals at high rates;
    a Linux timerfd armed at the deadline (CLOCK_MONOTONIC, the clock behind time.monotonic)
    wakes the event loop as soon as it fires. Elsewhere it falls back to gevent.sleep.

    A gevent timer BACKUP_S after the deadline backs the timerfd: libev now and then loses the
    timerfd's event (about once in a thousand waits here), and the loop then slept until some
    other event (an answer, ~100 ms later), every send due meanwhile going out at once.
    `backup_wakeups` counts the waits the backup ended."""

    CLOCK_MONOTONIC = 1
    TFD_TIMER_ABSTIME = 1
    TFD_NONBLOCK_CLOEXEC = 0o4000 | 0o2000000
    BACKUP_S = 0.001

    def __init__(self) -> None:
        self.fd = -1
        self.backup_wakeups = 0
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            self._settime = libc.timerfd_settime
            self.fd = libc.timerfd_create(self.CLOCK_MONOTONIC, self.TFD_NONBLOCK_CLOEXEC)
        except (OSError, AttributeError):
            return
        if self.fd >= 0:
            self._hub = gevent.get_hub()
            self._watcher = self._hub.loop.io(self.fd, 1)
            self._spec = _itimerspec()

    def _wait(self, backup_s: float) -> object:
        """Until the timerfd fires or backup_s have passed; which of the two ended the wait."""
        waiter = Waiter(self._hub)
        backup = self._hub.loop.timer(max(backup_s, 0.0))
        self._watcher.start(waiter.switch, self._watcher)
        # update: from the time now, not the loop's cached time (which can be ms behind)
        backup.start(waiter.switch, backup, update=True)
        try:
            return waiter.get()
        finally:
            self._watcher.stop()
            backup.close()

    def sleep_until(self, deadline: float) -> None:
        delay = deadline - clock()
        if delay <= 0:
            return
        if self.fd < 0:
            gevent.sleep(delay)
            return
        seconds = int(deadline)
        self._spec.value_s = seconds
        self._spec.value_ns = max(int((deadline - seconds) * 1e9), 1)
        self._settime(self.fd, self.TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None)
        while True:
            woken_by = self._wait(deadline - clock() + self.BACKUP_S)
            if clock() >= deadline:
                break
        if woken_by is not self._watcher:
            self.backup_wakeups += 1
        try:
            os.read(self.fd, 8)  # the expiration, so that the next wait is not woken by it
        except BlockingIOError:
            pass
