"""The Locust user's file writes, done by an OS thread of their own, off the event loop.

A file system call can block for hundreds of milliseconds: ext4 forces out a replaced file's
data when another is renamed over it, and a write waits for the journal. Seen here: replacing
the 0.5 s status file took 837 ms once in a 2-minute run. Done in the event loop's thread, such a
call stops every greenlet, the sender's too, and every send due meanwhile went out together
when it returned. Imported by the Locust user (servebench.loadgen.locustfile), in Locust's own
process: it imports nothing but gevent and the standard library.
"""

from __future__ import annotations

import _queue  # the C queue: gevent's monkey-patching replaces queue.SimpleQueue, not this one
import atexit
from collections.abc import Callable
from typing import Any

import gevent
from gevent import monkey

# A real OS thread, even in a monkey-patched process (where _thread makes greenlets).
_start_os_thread = monkey.get_original("_thread", "start_new_thread")
_os_sleep = monkey.get_original("time", "sleep")
_os_clock = monkey.get_original("time", "monotonic")


class WriterThread:
    """Runs the calls given to it one at a time, in order, in one OS thread. `call` never
    blocks; `drain` waits (yielding to other greenlets) until every call so far has run and
    raises the first error one of them raised. At the process's exit (Locust stopped by an
    interrupt) it finishes what is queued, for at most EXIT_WAIT_S."""

    DRAIN_POLL_S = 0.002
    EXIT_WAIT_S = 5.0

    def __init__(self) -> None:
        self._calls = _queue.SimpleQueue()
        self._queued = 0
        self._done = 0  # written by the thread only (the GIL makes the increment safe to read)
        self._error: BaseException | None = None
        _start_os_thread(self._run, ())
        atexit.register(self._finish_at_exit)

    def _run(self) -> None:
        while True:
            function, args = self._calls.get()
            try:
                function(*args)
            except BaseException as error:  # noqa: BLE001 - kept for drain() to raise
                if self._error is None:
                    self._error = error
            self._done += 1

    def _finish_at_exit(self) -> None:
        # No event loop to yield to any more: the OS's sleep.
        deadline = _os_clock() + self.EXIT_WAIT_S
        while self._done < self._queued and _os_clock() < deadline:
            _os_sleep(self.DRAIN_POLL_S)

    def call(self, function: Callable[..., Any], *args: Any) -> None:
        self._queued += 1
        self._calls.put((function, args))

    def drain(self, timeout_s: float) -> None:
        with gevent.Timeout(
            timeout_s, TimeoutError(f"file writes still pending after {timeout_s:g} s")
        ):
            while self._done < self._queued:
                gevent.sleep(self.DRAIN_POLL_S)
        if self._error is not None:
            raise self._error


class QueuedFile:
    """A text file whose writes the WriterThread does (a csv.writer's target)."""

    def __init__(self, writer: WriterThread, file: Any) -> None:
        self._writer = writer
        self._file = file

    def write(self, text: str) -> None:
        self._writer.call(self._file.write, text)
