"""The configuration: schema and default config in sync, clear errors for bad configs."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servebench.config import (
    ConfigError,
    config_errors,
    deep_merge,
    load_config,
    load_schema,
    load_yaml,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT = REPO_ROOT / "config" / "config.yaml"
PROFILES = [REPO_ROOT / "config" / "paper.yaml", REPO_ROOT / ".test" / "config.yaml"]


def _fixed_objects(schema: dict[str, Any], config: Any, path: str = ""):
    """Yield (path, schema node, config value) for every object with fixed keys."""
    if schema.get("type") == "object" and "properties" in schema:
        yield path, schema, config
        for key, child in schema["properties"].items():
            value = config.get(key) if isinstance(config, dict) else None
            yield from _fixed_objects(child, value, f"{path}.{key}".lstrip("."))


def test_default_config_is_valid():
    assert config_errors(load_yaml(DEFAULT)) == []


@pytest.mark.parametrize("profile", PROFILES, ids=lambda path: path.name)
def test_profiles_are_valid_over_the_default(profile):
    config = load_config(profile)
    assert set(config["experiment"]["scenarios"]) <= set(config["scenarios"])


def test_every_schema_key_has_description_and_default_and_defaults_live_only_there():
    schema = load_schema()
    config = load_yaml(DEFAULT)
    for path, node, value in _fixed_objects(schema, config):
        assert node.get("additionalProperties") is False, (
            f"{path or 'top'}: must reject unknown keys"
        )
        for key, child in node["properties"].items():
            where = f"{path}.{key}".lstrip(".")
            assert child.get("description"), f"{where}: no description in the schema"
            assert "default" in child, f"{where}: no default in the schema"
            # One home for defaults: config.yaml sets a key only to differ from the schema.
            if isinstance(value, dict) and key in value and child.get("type") != "object":
                assert value[key] != child["default"], (
                    f"{where}: config.yaml repeats the schema's default {child['default']!r}"
                )


def test_defaults_are_filled_in_from_the_schema():
    config = load_config()
    assert config["loadgen"]["validity"]["ks_alpha"] == 0.01
    assert config["variants"]["baseline"]["max_concurrency"] == 256
    assert config["scenarios"]["steady"]["repetitions"] == 3
    assert config["deploy"]["k3s"]["resources"]["limits"]["memory"] == "3Gi"


def test_variant_and_scenario_keys_are_described():
    defs = load_schema()["$defs"]
    for kind in ("variant", "scenario"):
        for key, child in defs[kind]["properties"].items():
            assert child.get("description"), f"$defs.{kind}.{key}: no description"


def test_misspelled_key_is_named():
    config = deep_merge(load_yaml(DEFAULT), {"loadgen": {"max_inflight": 3}})
    problems = config_errors(config)
    assert len(problems) == 1
    assert "max_inflight" in problems[0] and "loadgen" in problems[0]


def test_wrong_type_is_named():
    config = deep_merge(load_yaml(DEFAULT), {"calibration": {"slo_p99_ms": "fast"}})
    assert config_errors(config) == ["'calibration.slo_p99_ms': 'fast' is not of type 'number'"]


def test_scenario_needs_exactly_one_rate():
    both = {"scenarios": {"steady": {"rate_rps": 3.0}}}
    problems = config_errors(deep_merge(load_yaml(DEFAULT), both))
    assert problems == ["'scenarios.steady': give either 'rate_rps' or 'utilization', not both"]


def test_cross_key_rules():
    config = deep_merge(
        load_yaml(DEFAULT),
        {
            "cpus": {"server": [0], "loadgen": [0]},
            "experiment": {"variants": ["baseline", "turbo"]},
            "variants": {"optimized": {"workers": 2, "threads_per_worker": 1}},
        },
    )
    problems = "\n".join(config_errors(config))
    assert "share cores [0]" in problems
    assert "'turbo'" in problems
    assert "variants.optimized" in problems and "exceed" in problems


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "absent.yaml")


def test_cli_check_config_reports_bad_file(servebench_exe, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"seed": -4}))
    result = subprocess.run(
        [servebench_exe, "check-config", str(bad)], capture_output=True, text=True, cwd=REPO_ROOT
    )
    assert result.returncode == 2
    assert "'seed'" in result.stdout and "Traceback" not in result.stderr


@pytest.mark.parametrize("configfile", [None, *PROFILES], ids=["default", "paper", "test"])
def test_snakemake_dry_run_resolves(snakemake_exe, configfile, tmp_path):
    command = [snakemake_exe, "-n", "all", "--cores", "1"]
    if configfile is not None:
        command += ["--configfile", str(configfile)]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def test_snakemake_stops_on_a_bad_config_naming_the_key(snakemake_exe, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("loadgen:\n  overflow_polcy: drop\n")
    result = subprocess.run(
        [snakemake_exe, "-n", "all", "--cores", "1", "--configfile", str(bad)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert result.returncode != 0
    assert "unknown key 'overflow_polcy' under 'loadgen'" in result.stdout + result.stderr


def test_configuration_reference_matches_the_schema(repo_root):
    from servebench.config import reference_markdown

    committed = (repo_root / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert committed == reference_markdown(), (
        "docs/configuration.md is stale: run `servebench config-reference > docs/configuration.md`"
    )


def test_k3s_replicas_and_pdb_per_variant_are_checked_naming_the_variant():
    variants = {
        "baseline": {"k3s": {"pdb_min_available": 2}},
        "optimized": {"k3s": {"replicas": 2, "pdb_min_available": 3}},
    }
    problems = config_errors(deep_merge(load_yaml(DEFAULT), {"variants": variants}))
    assert problems == [
        "'variants.baseline.k3s': pdb_min_available 2 exceeds the variant's replicas 1 "
        "(replicas from deploy.k3s): the PodDisruptionBudget could never be met",
        "'variants.optimized.k3s': pdb_min_available 3 exceeds the variant's replicas 2: "
        "the PodDisruptionBudget could never be met",
    ]
    fine = {"optimized": {"k3s": {"replicas": 3, "pdb_min_available": 2, "max_replicas": None}}}
    assert config_errors(deep_merge(load_yaml(DEFAULT), {"variants": fine})) == []
    # deploy.k3s itself; a variant with enough replicas of its own is fine
    bad_global = {
        "deploy": {"k3s": {"pdb_min_available": 2}},
        "variants": {"optimized": {"k3s": {"replicas": 2}}},
    }
    assert config_errors(deep_merge(load_yaml(DEFAULT), bad_global)) == [
        "'deploy.k3s': pdb_min_available 2 exceeds replicas 1: the PodDisruptionBudget could "
        "never be met"
    ]
    typo = {"variants": {"optimized": {"k3s": {"replica": 2}}}}
    assert config_errors(deep_merge(load_yaml(DEFAULT), typo)) == [
        "unknown key 'replica' under 'variants.optimized.k3s' (known keys: max_replicas, "
        "pdb_min_available, replicas)"
    ]
    wrong = {"variants": {"optimized": {"k3s": {"replicas": 0}}}}
    assert config_errors(deep_merge(load_yaml(DEFAULT), wrong)) == [
        "'variants.optimized.k3s.replicas': 0 is less than the minimum of 1"
    ]


def test_schema_keywords_are_words():
    """An unquoted comma in a flow-style description (`{..., description: a, b}`) cuts the
    description and adds a stray keyword `b`: every key in the schema must be a plain name."""

    def keys(node: Any, path: str = ""):
        if isinstance(node, dict):
            for key, child in node.items():
                yield f"{path}.{key}", key
                yield from keys(child, f"{path}.{key}")
        elif isinstance(node, list):
            for child in node:
                yield from keys(child, path)

    stray = [path for path, key in keys(load_schema()) if " " in str(key)]
    assert stray == []


@pytest.mark.parametrize(
    ("section", "name"),
    [
        ("variants", "../x"),
        ("scenarios", "a/b"),
        ("resilience.variants", ".."),
        ("resilience.faults", "-rf"),
        ("variants", "x" * 65),
    ],
)
def test_names_that_become_folders_are_refused_naming_the_key(section, name):
    # A name becomes a folder that its job deletes: `../x` would delete outside results/.
    config = load_yaml(DEFAULT)
    where = config
    for part in section.split("."):
        where = where.setdefault(part, {})
    examples = {
        "variants": {"runtime": "onnx"},
        "scenarios": {"arrival": "exponential", "rate_rps": 2.0, "duration_s": 30},
        "resilience.variants": {"variant": "optimized"},
        "resilience.faults": {"kind": "stall", "at_s": 1},
    }
    where[name] = examples[section]  # a valid entry: its name is its only problem
    problems = config_errors(config)
    assert len(problems) == 1, problems
    assert problems[0].startswith(f"'{section}': the name {name!r} is not allowed")


def test_safe_names_are_accepted():
    config = deep_merge(
        load_yaml(DEFAULT), {"variants": {"Opt_2.int8-x": {"runtime": "onnx-int8"}}}
    )
    assert config_errors(config) == []
