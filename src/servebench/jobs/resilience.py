"""One resilience run: a fault injected at a scheduled time into a running open-loop load test.

deploy the Bento -> start the load test (the steady scenario by default)
-> a thread waits for the schedule's start, then injects the fault at `at_s`
-> /readyz and /livez are polled once a second all along (probes.csv)
-> after the run: faults.json with the injection time and the measured figures
   (servebench.faults.measure), meta.json last
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from servebench.deploy import deployed
from servebench.fault_kinds import PROBES_ONLY, wrong_target_message
from servebench.faults import FaultContext, FaultError, Injector, injector
from servebench.faults.measure import measure_fault
from servebench.faults.probes import Prober
from servebench.jobs.common import (
    clear_dir,
    deployment_record,
    measured_loadtest,
    reference_saturation_rps,
    run_meta,
    write_missing_outputs,
)
from servebench.layout import (
    FAULTS,
    K3S_FACTS,
    META,
    PLAN,
    PROBES,
    RAW,
    REQUESTS,
    RESILIENCE_FILES,
)
from servebench.loadgen.runner import worker_statuses
from servebench.matrix import FaultRunSpec, fault_seed
from servebench.provenance import write_json
from servebench.records import RunSummary
from servebench.settings import (
    DockerTarget,
    K3sTarget,
    LoadgenSettings,
    ResilienceSettings,
    deploy_target,
)

log = logging.getLogger(__name__)


# How long the fault thread waits for the load generator's start time t0 before giving up.
T0_WAIT_S = 120.0
# After the load test, how long the fault thread may still take (beyond a server's ready
# timeout: a supervised restart) before the run is declared invalid.
FAULT_JOIN_EXTRA_S = 30.0


def read_t0_wall(raw_dir: Path, run_id: str | None = None) -> float | None:
    """The schedule's start (wall clock) that the load generator's workers of run `run_id`
    report (None: of any run; with one, a status file another run's process wrote is never
    taken for this run's)."""
    for status in worker_statuses(raw_dir, run_id):
        if status.get("t0_wall"):
            return float(status["t0_wall"])
    return None


def _k3s_facts(out: Path) -> dict[str, Any] | None:
    """What the K3s driver wrote into k3s.json after teardown: pod restarts, events, the
    port-forward's restarts, the deployment's axes."""
    path = out / K3S_FACTS
    if not path.is_file():
        return None
    with contextlib.suppress(OSError, json.JSONDecodeError):
        data = json.loads(path.read_text(encoding="utf-8"))
        keys = ("replicas", "max_replicas", "pdb_min_available", "access", "restarts", "events")
        facts = {key: data.get(key) for key in keys}
        facts["port_forward_restarts"] = len(data.get("port_forward_restarts") or [])
        facts["pods"] = data.get("pods")
        return facts
    return None


class FaultThread(threading.Thread):
    """Waits for the schedule's start t0, sleeps until t0 + at_s, injects the fault."""

    def __init__(
        self,
        name: str,
        inject: Injector,
        context: FaultContext,
        raw_dir: Path,
        at_s: float,
        cpus: Sequence[int] | None = None,
        run_id: str | None = None,
    ):
        super().__init__(name=f"fault-{name}", daemon=True)
        self.cpus = list(cpus or [])
        self.inject = inject
        self.context = context
        self.raw_dir = raw_dir
        self.at_s = at_s
        self.run_id = run_id
        self.t0_wall: float | None = None
        self.record: dict[str, Any] = {}
        self.error: str | None = None

    def run(self) -> None:
        if self.cpus:  # never on the server's cores (Linux: this thread only)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(0, self.cpus)
        try:
            deadline = time.monotonic() + T0_WAIT_S
            while self.t0_wall is None:
                if self.context.stop.is_set() or time.monotonic() > deadline:
                    self.error = "the load generator never reported its start time"
                    return
                self.t0_wall = read_t0_wall(self.raw_dir, self.run_id)
                self.context.stop.wait(0.05)
            if self.context.stop.wait(max(0.0, self.t0_wall + self.at_s - time.time())):
                self.error = "the load test ended before the fault's time"
                return
            injected = time.time()
            facts = self.inject(self.context)
            self.record = {"injected_wall_s": injected, **facts}
        except Exception as error:  # reported in faults.json, the run goes on
            self.error = f"{type(error).__name__}: {error}"
            log.error("fault %s failed: %s", self.name, traceback.format_exc())
        # Stay until the run ends: a server restarted from this thread gets SIGTERM from the
        # kernel when its parent thread exits (PR_SET_PDEATHSIG, servebench.children).
        self.context.stop.wait()


def fault_entry(
    name: str,
    kind: str,
    params: dict[str, Any],
    restart: str,
    record: dict[str, Any],
    t0_wall: float | None,
    error: str | None,
) -> dict[str, Any]:
    """faults.json's entry of one fault: kind, window on the schedule's clock, parameters."""
    entry: dict[str, Any] = {"name": name, "kind": kind, "restart": restart, "params": params}
    injected = record.get("injected_wall_s")
    if injected is not None and t0_wall is not None:
        entry["start_s"] = round(injected - t0_wall, 4)
        end_wall = record.get("end_wall_s", injected)
        entry["end_s"] = round(end_wall - t0_wall, 4)
    else:
        entry["start_s"] = entry["end_s"] = None
    for key, value in record.items():
        if key.endswith("_wall_s") and key != "injected_wall_s" and t0_wall is not None:
            entry[key.replace("_wall_s", "_s")] = round(value - t0_wall, 4)
        elif not key.endswith("_wall_s"):
            entry[key] = value
    entry["injected"] = injected is not None
    entry["error"] = error
    return entry


def _read_requests(out: Path) -> pd.DataFrame | None:
    path = out / REQUESTS
    return pd.read_parquet(path) if path.is_file() else None


def _planned(out: Path) -> int | None:
    with contextlib.suppress(OSError, json.JSONDecodeError, KeyError):
        return len(json.loads((out / PLAN).read_text())["scheduled_s"])
    return None


def fault_problems(
    thread: FaultThread | None,
    entry: dict[str, Any],
    measured: dict[str, Any],
    requests: pd.DataFrame | None,
) -> list[str]:
    """Why a run's fault figures cannot be trusted: the fault did not fire (its thread's record
    is empty, or the thread had not finished), nothing was measured, the planned request count
    is unknown, or requests were lost. A fault that never fired would otherwise read as a
    service that took it without a single error."""
    problems = []
    if thread is not None and thread.is_alive():
        problems.append(
            f"the fault's injector had not returned {FAULT_JOIN_EXTRA_S:g} s after the server's"
            " ready timeout, past the end of the load test"
        )
    elif not entry["injected"]:
        if not entry["error"]:  # the thread's own error says why, when it has one
            problems.append("the fault was not injected")
    elif requests is None or not len(requests):
        problems.append("no request recorded: the fault's effect cannot be measured")
    if measured:
        if measured["requests_planned"] is None:
            problems.append(f"the planned request count is unknown ({PLAN} missing or unreadable)")
        elif measured["requests_lost"]:
            problems.append(f"{measured['requests_lost']} requests lost by the client")
    return problems


def run_fault(
    config: dict[str, Any],
    spec: FaultRunSpec,
    bento_record_path: str | Path | None,
    payloads_path: str | Path,
    out_dir: str | Path,
    reference_capacity_path: str | Path | None = None,
) -> dict[str, Any]:
    """One resilience run; writes the load test's files, probes.csv, faults.json, meta.json
    (last). A failed run is recorded, not raised. Returns the faults.json content.
    `bento_record_path`: None on the external target (no Bento)."""
    if spec.fault == PROBES_ONLY:
        return run_probes_only(
            config, spec, bento_record_path, payloads_path, out_dir, reference_capacity_path
        )
    job = _RunStart.of(config, spec, out_dir, bento_record_path)
    out, run, generator, target = job.out, job.run, job.generator, job.target
    fault = run.fault
    if isinstance(target, DockerTarget):  # supervisor: Docker's restart policy restarts it
        target = target.with_restart(run.restart)
    rate_rps: float | None = None
    summary = RunSummary()
    thread: FaultThread | None = None
    prober: Prober | None = None
    run_error = None
    try:
        inject = injector(fault.kind, spec.target)
        rate_rps = job.offered_rate_rps(reference_capacity_path)
        context = FaultContext(target=spec.target, params=fault.params, restart=run.restart)
        with deployed(target, job.record, out) as deployment, deployment.monitored(out):
            context.deployment = deployment
            prober = Prober(lambda: deployment.url, run.probe_interval_s, generator.cpus).start()
            run_id = uuid.uuid4().hex  # the load test's, in its workers' status files
            thread = FaultThread(
                fault.name, inject, context, out / RAW, fault.at_s, generator.cpus, run_id
            )
            thread.start()
            try:
                summary = job.loadtest(deployment.url, rate_rps, payloads_path, run_id)
            finally:
                context.stop.set()
                thread.join(timeout=target.ready_timeout_s + FAULT_JOIN_EXTRA_S)
                prober.stop()
    except (KeyboardInterrupt, SystemExit):
        raise
    except FaultError as error:  # a fault of another target: the message says it all
        log.error("resilience run %s not run: %s", out, error)
        run_error = f"{type(error).__name__}: {error}"
    except Exception as error:  # a failed run is data, not a stopped workflow
        log.error("resilience run %s failed: %s\n%s", out, error, traceback.format_exc())
        run_error = f"{type(error).__name__}: {error}"

    t0_wall = thread.t0_wall if thread is not None else None
    if prober is not None:
        prober.frame(t0_wall).to_csv(out / PROBES, index=False)
    entry = fault_entry(
        fault.name,
        fault.kind,
        {"at_s": fault.at_s, **fault.params},
        run.restart,
        thread.record if thread else {},
        t0_wall,
        thread.error if thread else run_error,
    )
    requests = _read_requests(out)
    measured: dict[str, Any] = {}
    if entry["start_s"] is not None and requests is not None and len(requests):
        probes = pd.read_csv(out / PROBES) if (out / PROBES).is_file() else None
        measured = measure_fault(
            requests,
            start_s=entry["start_s"],
            end_s=entry["end_s"],
            planned=_planned(out),
            warmup_s=run.warmup_s,
            horizon_s=run.duration_s,
            window_s=run.recovery.window_s,
            quiet_s=run.recovery.quiet_s,
            band_tolerance=run.recovery.band_tolerance,
            probes=probes,
        )
    entry.update(measured)
    problems = [p for p in dict.fromkeys((run_error, entry["error"])) if p]
    if run_error is None:
        problems += fault_problems(thread, entry, measured, requests)
    # The load generator's own validity (it sent on schedule, nothing else used the cores).
    problems += [f"load: {reason}" for reason in summary.invalid_reasons if run_error is None]
    k3s_facts = _k3s_facts(out) if isinstance(target, K3sTarget) else None
    extra_result = {"k3s": k3s_facts} if k3s_facts is not None else {}
    return _write_run_files(
        job,
        entry,
        problems,
        summary,
        rate_rps=rate_rps,
        t0_wall=t0_wall,
        extra_result=extra_result,
        extra_identity={
            "fault_config": config["resilience"]["faults"][spec.fault],
            "k3s_settings": target.as_dict() if isinstance(target, K3sTarget) else None,
        },
    )


def probe_only_figures(
    requests: pd.DataFrame | None, probes: pd.DataFrame, planned: int | None
) -> dict[str, Any]:
    """How the service held up under the resilience load without a fault: requests not ok by
    outcome, requests lost, the peak latency, the /readyz probes that failed (times on the
    schedule's clock)."""
    requests = requests if requests is not None else pd.DataFrame(columns=["outcome"])
    outcome = requests["outcome"].astype("string").fillna("missing")
    not_ok = outcome[outcome != "ok"]
    latency = requests["latency_ms"] if "latency_ms" in requests else pd.Series(dtype=float)
    readyz = probes[probes["path"] == "/readyz"] if len(probes) else probes
    failed = readyz[~readyz["ok"].astype(bool)] if len(readyz) else readyz
    return {
        "requests_planned": planned,
        "requests_recorded": int(len(requests)),
        "requests_lost": planned - len(requests) if planned is not None else None,
        "requests_not_ok": int(len(not_ok)),
        "not_ok_by_outcome": {str(k): int(v) for k, v in not_ok.value_counts().items()},
        "peak_latency_ms": float(latency.max()) if latency.notna().any() else None,
        "readyz_failed_probes": int(len(failed)),
        "readyz_first_failure_s": float(failed["t_s"].min()) if len(failed) else None,
    }


def run_probes_only(
    config: dict[str, Any],
    spec: FaultRunSpec,
    bento_record_path: str | Path | None,
    payloads_path: str | Path,
    out_dir: str | Path,
    reference_capacity_path: str | Path | None = None,
) -> dict[str, Any]:
    """The resilience run of a target without fault kinds (deploy.target external, where
    servebench owns neither the server's processes nor its platform): the resilience load test
    and the /readyz and /livez probes, no fault. Each configured fault is skipped with its
    reason (faults.json `skipped`); the run is valid when the load test is and no request was
    lost. Writes the files of a resilience run, meta.json last; returns faults.json's content."""
    job = _RunStart.of(config, spec, out_dir, bento_record_path)
    out, run, generator, target = job.out, job.run, job.generator, job.target
    skipped = [
        {
            "name": name,
            "kind": fault["kind"],
            "reason": wrong_target_message(fault["kind"], spec.target),
        }
        for name, fault in config["resilience"]["faults"].items()
    ]
    rate_rps: float | None = None
    summary = RunSummary()
    prober: Prober | None = None
    run_error = None
    notes: list[str] = []
    try:
        rate_rps = job.offered_rate_rps(reference_capacity_path)
        with deployed(target, job.record, out) as deployment, deployment.monitored(out):
            prober = Prober(lambda: deployment.url, run.probe_interval_s, generator.cpus).start()
            try:
                summary = job.loadtest(deployment.url, rate_rps, payloads_path)
            finally:
                prober.stop()
        notes = list(getattr(deployment, "notes", []))
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as error:  # a failed run is data, not a stopped workflow
        log.error("resilience run %s failed: %s\n%s", out, error, traceback.format_exc())
        run_error = f"{type(error).__name__}: {error}"
    t0_wall = read_t0_wall(out / RAW)
    probes = prober.frame(t0_wall) if prober is not None else pd.DataFrame()
    if prober is not None:
        probes.to_csv(out / PROBES, index=False)
    figures = probe_only_figures(_read_requests(out), probes, _planned(out))
    entry = {
        "name": PROBES_ONLY,
        "kind": "none",
        "restart": run.restart,
        "params": {},
        "start_s": None,
        "end_s": None,
        "injected": False,
        "error": run_error,
        "skipped": skipped,
        **figures,
    }
    problems = [run_error] if run_error else []
    problems += [f"load: {reason}" for reason in summary.invalid_reasons if run_error is None]
    if figures["requests_lost"]:
        problems.append(f"{figures['requests_lost']} requests lost by the client")
    return _write_run_files(
        job,
        entry,
        problems,
        summary,
        rate_rps=rate_rps,
        t0_wall=t0_wall,
        extra_result={"skipped_faults": skipped},
        extra_identity={
            "fault_config": None,
            "skipped_faults": [fault["name"] for fault in skipped],
        },
        notes=notes,
    )


@dataclass(frozen=True)
class _RunStart:
    """What both kinds of resilience run settle before anything runs: the cleared run folder,
    the settings, the deployment target and record, the schedule's seed, the start time."""

    config: dict[str, Any]
    spec: FaultRunSpec
    out: Path
    run: ResilienceSettings
    generator: LoadgenSettings
    target: Any
    record: dict[str, Any]
    seed: int
    started: float

    @classmethod
    def of(
        cls,
        config: dict[str, Any],
        spec: FaultRunSpec,
        out_dir: str | Path,
        bento_record_path: str | Path | None,
    ) -> _RunStart:
        out = Path(out_dir)
        clear_dir(out)
        run = ResilienceSettings.of(config, spec.variant, spec.fault)
        return cls(
            config=config,
            spec=spec,
            out=out,
            run=run,
            generator=LoadgenSettings.of(config),
            target=deploy_target(config, run.bento_variant),
            record=deployment_record(config, run.bento_variant, bento_record_path),
            seed=fault_seed(config, spec.fault, spec.repetition),
            started=time.time(),
        )

    def offered_rate_rps(self, reference_capacity_path: str | Path | None) -> float:
        """The run's rate: resilience.rate_rps, else its scenario's share of the reference
        variant's saturation throughput."""
        return self.run.rate_rps or self.run.scenario.offered_rate_rps(
            reference_saturation_rps(reference_capacity_path)
        )

    def loadtest(
        self, url: str, rate_rps: float, payloads_path: str | Path, run_id: str | None = None
    ) -> RunSummary:
        """The run's load: its scenario's schedule at `rate_rps`, measured as every run of the
        study is (servebench.jobs.common.measured_loadtest) on the server's and the
        generator's cores."""
        config, run = self.config, self.run
        return measured_loadtest(
            self.target.cpus + self.generator.cpus,
            float(config["measurement"]["foreign_cpu_max_percent"]),
            int(config["measurement"]["min_requests"]),
            host=url,
            out_dir=self.out,
            seed=self.seed,
            arrival=run.scenario.arrival,
            rate_rps=rate_rps,
            cv=run.scenario.cv,
            shape=run.scenario.shape,
            duration_s=run.duration_s,
            warmup_s=run.warmup_s,
            payloads=payloads_path,
            generator=self.generator,
            progress=False,
            run_id=run_id,
        )


def _write_run_files(
    job: _RunStart,
    entry: dict[str, Any],
    problems: list[str],
    summary: RunSummary,
    *,
    rate_rps: float | None,
    t0_wall: float | None,
    extra_result: dict[str, Any],
    extra_identity: dict[str, Any],
    notes: Sequence[str] = (),
) -> dict[str, Any]:
    """A resilience run's faults.json, the files its load test did not write, and meta.json
    (last: the completion marker). Returns faults.json's content."""
    config, spec, run, out = job.config, job.spec, job.run, job.out
    result = {
        "faults": [entry],
        "target": spec.target,
        "variant": spec.variant,
        "bento_variant": run.bento_variant,
        "restart": run.restart,
        "fault": spec.fault,
        "repetition": spec.repetition,
        "rate_rps": rate_rps,
        "t0_wall_s": t0_wall,
        "valid": not problems,
        "problems": problems,
        **extra_result,
    }
    write_json(out / FAULTS, result)
    write_missing_outputs(out, RESILIENCE_FILES)
    identity = {
        "kind": "resilience",
        "target": spec.target,
        "variant": spec.variant,
        "bento_variant": run.bento_variant,
        "restart": run.restart,
        "fault": spec.fault,
        "scenario": run.scenario.name,
        "scenario_config": config["scenarios"][run.scenario.name],
        "repetition": spec.repetition,
        "seed": job.seed,
        "rate_rps": rate_rps,
        "duration_s": run.duration_s,
        **extra_identity,
    }
    meta = run_meta(config, job.record, identity)
    meta.update(
        wall_time_s=round(time.time() - job.started, 3),
        summary_valid=summary.valid,
        valid=not problems,
        problems=problems,
    )
    if notes:
        meta["deployment_notes"] = list(notes)
    write_json(out / META, meta)
    return result
