"""`servebench job ...` and `servebench bento build`: one job of the workflow by hand, with the
same code and the same files as the workflow's rule (paths from servebench.layout).

    servebench job calibrate  --variant optimized
    servebench job scenario   --variant optimized --scenario steady --repetition 0
    servebench job resilience --variant optimized --fault kill-worker --repetition 0
    servebench bento build    --variant optimized

Each takes the configuration as the workflow does (`--configfile FILE`, merged over
config/config.yaml). Nothing upstream is rebuilt: a missing input is an error that names the
`snakemake` target that makes it.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from servebench.cli import add_configfile_option
from servebench.errors import UserError
from servebench.layout import CAPACITY, Layout


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from servebench.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    return load_config(*args.configfile)


def _existing(path: Path, what: str) -> Path:
    if not path.is_file():
        raise UserError(f"{path}: no {what} (make it with `snakemake --cores 2 {path}`)")
    return path


def _variant(config: dict[str, Any], name: str) -> str:
    from servebench.settings import study_variants

    known = study_variants(config)  # on the external target, the variants with a URL too
    if name not in known:
        raise UserError(f"no variant named {name!r} (known: {', '.join(known)})")
    return name


def _bento_record(config: dict[str, Any], variant: str) -> Path | None:
    """The variant's Bento record; None on the external target, which builds none."""
    if config["deploy"]["target"] == "external":
        return None
    return _existing(Layout.of(config).bento_record(variant), "Bento record")


def _reference_capacity(config: dict[str, Any], needed: bool) -> Path | None:
    if not needed:
        return None
    reference = config["experiment"]["reference_variant"]
    folder = Layout.of(config).calibration_dir(config["deploy"]["target"], reference)
    return _existing(folder / CAPACITY, f"calibration of the reference variant {reference}")


def _calibrate(args: argparse.Namespace) -> int:
    from servebench.jobs.calibrate import calibrate

    config = _config(args)
    layout = Layout.of(config)
    variant = _variant(config, args.variant)
    result = calibrate(
        config,
        variant,
        _bento_record(config, variant),
        _existing(layout.payloads_csv, "payloads"),
        layout.calibration_dir(config["deploy"]["target"], variant),
    )
    print(f"capacity of {variant}: {result['capacity_rps']} req/s")
    return 0


def _scenario(args: argparse.Namespace) -> int:
    from servebench.jobs.scenario import run_scenario
    from servebench.matrix import RunSpec
    from servebench.settings import ScenarioSettings

    config = _config(args)
    layout = Layout.of(config)
    variant = _variant(config, args.variant)
    if args.scenario not in config["scenarios"]:
        raise UserError(f"no scenario named {args.scenario!r}")
    spec = RunSpec(config["deploy"]["target"], variant, args.scenario, args.repetition)
    needed = ScenarioSettings.of(config, args.scenario).needs_reference
    summary = run_scenario(
        config,
        spec,
        _bento_record(config, variant),
        _existing(layout.payloads_csv, "payloads"),
        spec.path(layout.results_dir),
        _reference_capacity(config, needed),
    )
    print(f"{spec.path(layout.results_dir)}: {'valid' if summary.valid else 'INVALID'}")
    for reason in summary.invalid_reasons:
        print(f"  - {reason}")
    return 0 if summary.valid else 1


def _resilience(args: argparse.Namespace) -> int:
    from servebench.fault_kinds import resilience_faults
    from servebench.jobs.resilience import run_fault
    from servebench.matrix import FaultRunSpec
    from servebench.settings import ResilienceSettings

    config = _config(args)
    layout = Layout.of(config)
    resilience = config["resilience"]
    if args.variant not in resilience["variants"]:
        raise UserError(f"no resilience variant named {args.variant!r}")
    if args.fault not in resilience["faults"] and args.fault not in resilience_faults(config):
        raise UserError(f"no fault named {args.fault!r}")
    run = ResilienceSettings.of(config, args.variant, args.fault)
    spec = FaultRunSpec(config["deploy"]["target"], args.variant, args.fault, args.repetition)
    result = run_fault(
        config,
        spec,
        _bento_record(config, run.bento_variant),
        _existing(layout.payloads_csv, "payloads"),
        spec.path(layout.results_dir),
        _reference_capacity(config, run.needs_reference),
    )
    print(f"{spec.path(layout.results_dir)}: {'valid' if result['valid'] else 'INVALID'}")
    for problem in result["problems"]:
        print(f"  - {problem}")
    return 0 if result["valid"] else 1


def _bento(args: argparse.Namespace) -> int:
    from servebench.bento import build_bento
    from servebench.jobs.tune import tuned_settings
    from servebench.model.resolve import resolve_model

    config = _config(args)
    layout = Layout.of(config)
    variant = _variant(config, args.variant)
    model_name = resolve_model(config["model"]).name
    settings = tuned_settings(config, variant)
    runtime = (settings or config["variants"][variant])["runtime"]
    runtime_dir = layout.model_dir(model_name, runtime)
    _existing(runtime_dir / "fidelity.json", f"fidelity check of runtime {runtime}")
    record = build_bento(
        config, variant, runtime_dir, layout.bento_record(variant), settings=settings
    )
    print(f"{layout.bento_record(variant)}: {record['tag']} ({record['bento_size_bytes']} bytes)")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from servebench.jobs.tune import tune
    from servebench.model.resolve import resolve_model
    from servebench.settings import TuningSettings, model_runtimes

    config = _config(args)
    layout = Layout.of(config)
    tuning = TuningSettings.of(config)
    _variant(config, tuning.variant)
    model_name = resolve_model(config["model"]).name
    runtime_dirs = {}
    for runtime in tuning.runtimes:
        if runtime not in model_runtimes(config):
            raise UserError(f"tuning.runtimes: {runtime} is not in model.runtimes")
        runtime_dir = layout.model_dir(model_name, runtime)
        _existing(runtime_dir / "fidelity.json", f"fidelity check of runtime {runtime}")
        _existing(runtime_dir / "inprocess_bench.csv", f"in-process benchmark of {runtime}")
        runtime_dirs[runtime] = runtime_dir
    tuned = tune(
        config,
        runtime_dirs,
        _existing(layout.payloads_csv, "payloads"),
        layout.tuning_dir,
        log_path=layout.log("tuning", "tune.log"),
    )
    print(
        f"{layout.tuning_dir}: tuned {tuned['variant']}: {tuned['configuration']} "
        f"({tuned['provenance']['trials']} configurations in "
        f"{tuned['provenance']['elapsed_s']:.0f} s; every one in tuning.csv)"
    )
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    job = subparsers.add_parser(
        "job",
        help="run one job of the workflow by hand (calibrate, scenario, resilience)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    jobs = job.add_subparsers(dest="job", metavar="JOB", required=True)
    calibrate = jobs.add_parser(
        "calibrate",
        help="calibrate one variant's capacity",
        description="Deploy one variant's Bento, search its saturation throughput and capacity "
        "at the SLO, tear it down: the workflow's calibrate rule (results/calibration/...).",
    )
    calibrate.add_argument(
        "--variant", required=True, metavar="NAME", help="variant name (under `variants`)"
    )
    calibrate.set_defaults(func=_calibrate)
    scenario = jobs.add_parser(
        "scenario",
        help="one run of the matrix",
        description="Deploy one variant, run one repetition of one scenario against it, tear it "
        "down: the workflow's loadtest rule (results/runs/...). Exit status 1: an invalid run.",
    )
    scenario.add_argument(
        "--variant", required=True, metavar="NAME", help="variant name (under `variants`)"
    )
    scenario.add_argument(
        "--scenario", required=True, metavar="NAME", help="scenario name (under `scenarios`)"
    )
    scenario.add_argument(
        "--repetition", type=int, default=0, metavar="N", help="repetition (default 0)"
    )
    scenario.set_defaults(func=_scenario)
    resilience = jobs.add_parser(
        "resilience",
        help="one resilience run",
        description="Deploy one resilience variant, inject one fault under load, tear it down: "
        "the workflow's resilience_run rule (results/resilience/...). Exit status 1: an "
        "invalid run.",
    )
    resilience.add_argument(
        "--variant", required=True, metavar="NAME", help="resilience.variants name"
    )
    resilience.add_argument("--fault", required=True, metavar="NAME", help="resilience.faults name")
    resilience.add_argument(
        "--repetition", type=int, default=0, metavar="N", help="repetition (default 0)"
    )
    resilience.set_defaults(func=_resilience)
    for parser in (calibrate, scenario, resilience):
        add_configfile_option(parser)
    bento = subparsers.add_parser(
        "bento",
        help="build one variant's Bento (as the workflow's bento rule does)",
        description="Build (or reuse) one variant's Bento from its runtime directory.",
    )
    actions = bento.add_subparsers(dest="bento_command", metavar="ACTION", required=True)
    build = actions.add_parser(
        "build",
        help="build one variant's Bento",
        description="Build (or reuse) one variant's Bento from its runtime directory and write "
        "its record (results/bentos/<variant>.json), as the workflow's bento rule does.",
    )
    build.add_argument(
        "--variant", required=True, metavar="NAME", help="variant name (under `variants`)"
    )
    add_configfile_option(build)
    build.set_defaults(func=_bento)
    tune = subparsers.add_parser(
        "tune",
        help="search the tuned variant's service knobs (the workflow's tune rule)",
        description="Race the service's configurations (runtime, batching off, adaptive or "
        "greedy, batch size and latency budget, sorted sub-batches, workers x threads, "
        "gc.freeze) for the highest "
        "capacity at the SLO on the server's cores, within tuning.budget_s, from the study's "
        "model directories: results/tuning/{tuning.csv, tuned.json} (docs/tuning.md). The "
        "next `snakemake all` builds the tuned variant's Bento from tuned.json unless "
        "tuning.pin is set. It owns the machine while it runs.",
    )
    add_configfile_option(tune)
    tune.set_defaults(func=_tune)
