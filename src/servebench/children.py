"""Child processes that die with the thread that started them, pinned to cores, started
without `preexec_fn`.

`subprocess.Popen(preexec_fn=...)` runs Python between fork and exec, which the subprocess
module documents as unsafe in a process with threads (a lock held by another thread at the
fork stays locked in the child: a deadlock). Servers and load generators are started from
threads (a supervised restart from the fault thread, a port-forward restarted by its
supervisor), so a child is started instead through a launcher, `python -I -S -c LAUNCHER`: a
fresh interpreter without threads that
  1. asks the kernel for a death signal (prctl PR_SET_PDEATHSIG): when the thread that started
     it exits (the driver killed by SIGKILL or the OOM killer included), the kernel sends it;
  2. checks that its parent is still the process that started it (if that one died before
     step 1, it sends itself the signal at once);
  3. pins itself to the given cores (inherited by everything it starts);
  4. execs the real command in its own place: the pid, the death signal and the affinity stay.
The death signal is cleared when the command is a set-user-id program run by another user
(`sudo` by a non-root user): such a child is stopped by its driver's `finally` only.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Sequence

# argv after `-c`: parent pid, signal number, comma-separated cores ("" = unpinned), command...
LAUNCHER = r"""
import ctypes, os, signal, sys
parent, number, cores = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
libc = ctypes.CDLL(None, use_errno=True)
if libc.prctl(1, number, 0, 0, 0) != 0:  # PR_SET_PDEATHSIG
    sys.exit(f"servebench launcher: prctl failed: {os.strerror(ctypes.get_errno())}")
if os.getppid() != parent:  # the parent died before the death signal was set
    os.kill(os.getpid(), number)
    sys.exit(1)
if cores:
    os.sched_setaffinity(0, [int(core) for core in cores.split(",")])
try:
    os.execvp(sys.argv[4], sys.argv[4:])
except OSError as error:
    sys.stderr.write(f"servebench launcher: cannot run {sys.argv[4]}: {error}\n")
    sys.exit(127)
"""


def guarded(
    command: Sequence[str],
    *,
    cpus: Sequence[int] | None = None,
    death_signal: int = signal.SIGTERM,
) -> list[str]:
    """`command` prefixed with the launcher: started with Popen (no preexec_fn), it runs as
    `command` pinned to `cpus` (None or empty: not pinned) and gets `death_signal` when the
    calling thread exits."""
    cores = ",".join(str(int(core)) for core in cpus or [])
    return [
        sys.executable,
        "-I",
        "-S",
        "-c",
        LAUNCHER,
        str(os.getpid()),
        str(int(death_signal)),
        cores,
        *[str(part) for part in command],
    ]
