"""Open-loop Locust user: sends a precomputed schedule, one greenlet per request.

Run only by Locust, in its own process (`servebench.loadgen.runner` starts it); never imported
by servebench itself. Everything it needs comes from the plan (written by the runner): send
times, payload order, request bodies, the in-flight cap. The standalone runner and the master
read it from the file named by $SERVEBENCH_PLAN. A worker's own plan file only names its own
working folder (servebench.loadgen.runner.worker_command): the master sends it the plan over
Locust's message channel (`servebench_plan`), and the worker sends its request log back the
same way (`servebench_rows`, every status interval), so that workers on other machines share no
file with the master, which writes every raw/requests_worker<w>.csv and status_worker<w>.json.

Timeline: the master (or the single local runner) picks a common start time t0 a moment ahead
and sends it to every worker (a Locust custom message). Worker w of N sends the requests whose
global index i has i % N == w, each at t0 + scheduled_s[i] in its own greenlet, so a slow
answer never delays a later send. Each request is logged when it ends: its CSV line goes at
once to a thread that writes it, line-buffered, off the event loop (servebench.loadgen.writer:
a file system call can block for hundreds of ms), so a run cut short keeps every request that
completed (distributed: every request whose line reached the master, i.e. all but at most the
last half second's).
"""

from __future__ import annotations

import csv
import json
import os
import time

import gevent
from gevent.event import Event
from gevent.lock import Semaphore
from locust import FastHttpUser, events, task
from locust.runners import WORKER_REPORT_INTERVAL, MasterRunner, WorkerRunner
from locust.stats import CSV_STATS_INTERVAL_SEC

# servebench.records imports nothing but the standard library (nothing that gevent would break),
# servebench.loadgen.sleeper and .writer nothing but gevent.
from servebench.loadgen.sleeper import PreciseSleeper
from servebench.loadgen.writer import QueuedFile, WriterThread
from servebench.records import LOG_COLUMNS

PLAN_PATH = os.environ["SERVEBENCH_PLAN"]
with open(PLAN_PATH, encoding="utf-8") as _file:
    PLAN = json.load(_file)

# The run's log folder, opened once: every file is created relative to it, so a process that
# outlives its run (its driver killed) writes into that run's folder, which the next run of the
# same path has replaced, never into the new one (creating a file in a removed folder fails).
LOG_DIR_FD = os.open(PLAN["log_dir"], os.O_RDONLY | os.O_DIRECTORY)


def _in_log_dir(path: str, flags: int) -> int:
    return os.open(path, flags, 0o666, dir_fd=LOG_DIR_FD)


_start = {"t0_mono": None, "t0_wall": None}
_started = Event()
_finished_workers: dict[int, dict] = {}
clock = time.monotonic
# What a worker needs of the master's plan (its own log folder stays its own).
WORKER_PLAN_KEYS = (
    "run_id", "workers", "endpoint", "method", "headers", "bodies", "scheduled_s",
    "payload_index", "max_in_flight", "overflow", "timeout_s", "rejected_statuses",
    "status_interval_s",
)  # fmt: skip
# The master's per-worker request logs in raw/, opened once each: {worker: (file, writer)}.
_worker_logs: dict[int, tuple] = {}


def _on_plan(environment, msg, **_kwargs) -> None:  # noqa: ANN001
    # A worker: the master's plan, received before the spawn message that starts the user.
    PLAN.update(msg.data)
    OpenLoopUser.concurrency = PLAN["max_in_flight"]
    OpenLoopUser.network_timeout = PLAN["timeout_s"]
    OpenLoopUser.connection_timeout = PLAN["timeout_s"]


def _master_log(worker: int):  # noqa: ANN202
    """The master's raw/requests_worker<w>.csv of a worker (created with its header)."""
    if worker not in _worker_logs:
        path = os.path.join(PLAN["log_dir"], f"requests_worker{worker}.csv")
        file = open(path, "w", encoding="utf-8", newline="", buffering=1)  # noqa: SIM115
        writer = csv.writer(file, lineterminator="\n")
        writer.writerow(LOG_COLUMNS)
        _worker_logs[worker] = (file, writer)
    return _worker_logs[worker][1]


def _master_status(status: dict) -> None:
    """The master's raw/status_worker<w>.json of a worker (replaced atomically), stamped with
    the master's run."""
    if "run_id" in PLAN:
        status = dict(status, run_id=PLAN["run_id"])
    path = os.path.join(PLAN["log_dir"], f"status_worker{status['worker']}.json")
    with open(path + ".tmp", "w", encoding="utf-8") as file:
        json.dump(status, file)
    os.replace(path + ".tmp", path)


def _on_rows(environment, msg, **_kwargs) -> None:  # noqa: ANN001
    # The master: a worker's log lines and counters since its last report, in order.
    _master_log(msg.data["worker"]).writerows(msg.data["rows"])
    _master_status(msg.data["status"])


def _on_start(environment, msg, **_kwargs) -> None:  # noqa: ANN001
    # Map the shared wall-clock start onto this process's monotonic clock once; every later
    # timestamp is monotonic (immune to clock steps) relative to it.
    t0_wall = msg.data["t0_wall"]
    _start["t0_wall"] = t0_wall
    _start["t0_mono"] = clock() + (t0_wall - time.time())
    _started.set()


def _on_done(environment, msg, **_kwargs) -> None:  # noqa: ANN001
    if isinstance(environment.runner, MasterRunner):  # its final counters and CPU figures
        _master_log(msg.data["worker"])  # (a worker that answered nothing has an empty log)
        _master_status(msg.data)
    _finished_workers[msg.data["worker"]] = msg.data
    if len(_finished_workers) >= PLAN["workers"]:
        # Every worker has sent its share and seen its answers: end the test, once Locust's
        # own CSV writer (every CSV_STATS_INTERVAL_SEC) and, distributed, the workers' stats
        # reports (every WORKER_REPORT_INTERVAL) have caught up, so its reports are complete;
        # at once when it writes none.
        catch_up_s = 0.0
        if PLAN.get("locust_reports", True):
            catch_up_s = CSV_STATS_INTERVAL_SEC + 0.3
            if isinstance(environment.runner, MasterRunner):
                catch_up_s += WORKER_REPORT_INTERVAL
        gevent.spawn_later(catch_up_s, environment.runner.quit)


@events.init.add_listener
def _on_init(environment, **_kwargs) -> None:  # noqa: ANN001
    runner = environment.runner
    if not isinstance(runner, MasterRunner):
        runner.register_message("servebench_start", _on_start)
    if not isinstance(runner, WorkerRunner):
        runner.register_message("servebench_done", _on_done)
    if isinstance(runner, WorkerRunner):
        runner.register_message("servebench_plan", _on_plan)
    if isinstance(runner, MasterRunner):
        runner.register_message("servebench_rows", _on_rows)


@events.test_start.add_listener
def _on_test_start(environment, **_kwargs) -> None:  # noqa: ANN001
    runner = environment.runner
    if isinstance(runner, WorkerRunner):
        return
    if isinstance(runner, MasterRunner):  # the plan first: a worker's messages arrive in order
        plan = {key: PLAN[key] for key in WORKER_PLAN_KEYS if key in PLAN}
        runner.send_message("servebench_plan", plan)
    runner.send_message("servebench_start", {"t0_wall": time.time() + PLAN["start_lead_s"]})


def classify(status: int, error: BaseException | None) -> str:
    """ok / rejected / failed / timeout. A status means the server answered (Locust also sets
    an error for a non-2xx status); no status means the request got no answer."""
    if not status:
        is_timeout = isinstance(error, (TimeoutError, gevent.Timeout))
        return "timeout" if is_timeout or "timed out" in str(error).lower() else "failed"
    if 200 <= status < 300:
        return "ok"
    if status in PLAN["rejected_statuses"]:  # a worker's come from the master
        return "rejected"
    return "failed"


class OpenLoopUser(FastHttpUser):
    """One per worker process: replays its share of the global schedule, open loop."""

    # The HTTP pool never makes a request wait: our own cap (below) is the only limit.
    concurrency = PLAN["max_in_flight"]
    network_timeout = PLAN["timeout_s"]
    connection_timeout = PLAN["timeout_s"]
    max_retries = 0

    def on_start(self) -> None:
        self.worker = max(self.environment.runner.worker_index, 0)
        self.slots = Semaphore(PLAN["max_in_flight"])
        self.drop = PLAN["overflow"] == "drop"
        self.counts = {"sent": 0, "done": 0, "dropped": 0, "delayed": 0, "max_in_flight": 0}
        self.pending = 0
        self.idle = Event()
        self.idle.set()
        log_name = f"requests_worker{self.worker}.csv"
        # Line-buffered: every line reaches the OS when written, so a kill loses nothing done.
        self.log_file = open(  # noqa: SIM115
            log_name, "w", encoding="utf-8", newline="", buffering=1, opener=_in_log_dir
        )
        # Every file write (log lines, status files) by one thread of its own, in order.
        self.writer = WriterThread()
        self.log = csv.writer(QueuedFile(self.writer, self.log_file), lineterminator="\n")
        self.log.writerow(LOG_COLUMNS)
        self.status_name = f"status_worker{self.worker}.json"
        # A worker sends its lines and counters to the master (its own log is a local copy).
        self.remote = isinstance(self.environment.runner, WorkerRunner)
        self.rows: list[tuple] = []
        self._warm_up()

    def _warm_up(self) -> None:
        """Open one connection before the start, sending nothing. The first connection
        starts gevent's resolver thread pool, which blocks the event loop for ~15 ms: done
        during the schedule, that would delay the sends behind it."""
        try:
            client = self.client.client.clientpool.get_client(self.host + PLAN["endpoint"])
            pool = client._connection_pool
            pool.release_socket(pool.get_socket())
        except Exception:  # noqa: BLE001 - best effort: an unreachable server is measured later
            pass

    @task
    def replay(self) -> None:
        if getattr(self, "replayed", False):
            # Locust reruns a task that raised: never send the schedule twice.
            gevent.sleep(3600.0)
            return
        self.replayed = True
        _started.wait()
        t0 = _start["t0_mono"]
        scheduled = PLAN["scheduled_s"]
        payloads = PLAN["payload_index"]
        mine = range(self.worker, len(scheduled), PLAN["workers"])
        sleeper = PreciseSleeper()
        sleep_until = sleeper.sleep_until
        sleep_until(t0)
        reporter = gevent.spawn(self._report_status)
        cpu_start = time.process_time()
        wall_start = clock()
        spawn = gevent.spawn
        for index in mine:
            sleep_until(t0 + scheduled[index])
            self.pending += 1
            self.idle.clear()
            spawn(self._send, index, payloads[index], t0)
        # CPU over the sending phase (waiting for the last answers costs almost nothing).
        sending_cpu_s = time.process_time() - cpu_start
        sending_wall_s = clock() - wall_start
        self.idle.wait(timeout=PLAN["timeout_s"] + 5.0)
        reporter.kill()
        result = dict(
            self.counts,
            worker=self.worker,
            planned=len(mine),
            in_flight_at_end=self.pending,
            timer_backup_wakeups=sleeper.backup_wakeups,
            sending_cpu_s=sending_cpu_s,
            sending_wall_s=sending_wall_s,
            cpu_percent=100.0 * sending_cpu_s / sending_wall_s if sending_wall_s > 0 else None,
            t0_wall=_start["t0_wall"],
            finished=True,
        )
        self._write_status(result)
        self.writer.call(self.log_file.flush)
        self.writer.drain(timeout_s=PLAN["timeout_s"] + 5.0)
        if self.remote:  # the last lines first: the master writes them before the counters
            self._send_rows(result)
        self.environment.runner.send_message("servebench_done", result)
        gevent.sleep(PLAN["timeout_s"] + 3600.0)  # until the master quits the test

    def _send(self, index: int, payload_index: int, t0: float) -> None:
        delayed = 0
        if not self.slots.acquire(blocking=False):
            if self.drop:
                self.counts["dropped"] += 1
                self._finish(index, payload_index, "", "", "", "dropped", 0, "in-flight cap")
                return
            # Delay policy: send when a slot frees; latency still counts from the schedule.
            delayed = 1
            self.counts["delayed"] += 1
            self.slots.acquire()
        in_flight = PLAN["max_in_flight"] - self.slots.counter
        if in_flight > self.counts["max_in_flight"]:
            self.counts["max_in_flight"] = in_flight
        body = PLAN["bodies"][payload_index]
        sent = clock()
        self.counts["sent"] += 1
        status, error = 0, None
        try:
            response = self.client.request(
                PLAN["method"],
                PLAN["endpoint"],
                data=body,
                headers=PLAN["headers"],
                name=PLAN["endpoint"],
            )
            status = response.status_code or 0
            error = getattr(response, "error", None)
        except Exception as exception:  # anything the HTTP client did not turn into a response
            error = exception
        finally:
            done = clock()
            self.slots.release()
        outcome = classify(status, error)
        message = "" if error is None else f"{type(error).__name__}: {error}"[:200]
        self.counts["done"] += 1
        self._finish(index, payload_index, sent - t0, done - t0, status, outcome, delayed, message)

    def _finish(self, index, payload_index, sent_s, done_s, status, outcome, delayed, error):  # noqa: ANN001
        """One line of the per-request log (flushed: the file is line-buffered)."""
        scheduled_s = PLAN["scheduled_s"][index]
        row = (
            index,
            self.worker,
            payload_index,
            repr(scheduled_s),
            f"{sent_s:.7f}" if sent_s != "" else "",
            f"{done_s:.7f}" if done_s != "" else "",
            status,
            outcome,
            delayed,
            error,
        )
        self.log.writerow(row)
        if self.remote:
            self.rows.append(row)
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    def _report_status(self) -> None:
        while True:
            gevent.sleep(PLAN["status_interval_s"])
            status = dict(self.counts, worker=self.worker, in_flight=self.pending)
            self._write_status(status)
            if self.remote:
                self._send_rows(status)

    def _send_rows(self, status: dict) -> None:
        """The lines since the last report, and the counters, to the master."""
        rows, self.rows[:] = list(self.rows), []
        status = dict(
            status,
            run_id=PLAN.get("run_id"),
            t0_wall=_start["t0_wall"],
            updated_s=clock() - _start["t0_mono"],
        )
        self.environment.runner.send_message(
            "servebench_rows", {"worker": self.worker, "rows": rows, "status": status}
        )

    def _write_status(self, status: dict) -> None:
        status = dict(
            status,
            run_id=PLAN["run_id"],  # readers take only their run's statuses
            t0_wall=_start["t0_wall"],
            updated_s=clock() - _start["t0_mono"],
        )
        self.writer.call(_replace_json, self.status_name, status)


def _replace_json(name: str, content: dict) -> None:
    """Replace file `name` in the log folder by `content`, atomically (readers never see half)."""
    temporary = name + ".tmp"
    with open(temporary, "w", encoding="utf-8", opener=_in_log_dir) as file:
        json.dump(content, file)
    os.replace(temporary, name, src_dir_fd=LOG_DIR_FD, dst_dir_fd=LOG_DIR_FD)
