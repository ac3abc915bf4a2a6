"""Configuration: loading, validation against config/schema.yaml, readable errors.

The workflow validates its config at start (workflow/rules/common.smk) with
`snakemake.utils.validate`; before that, `config_errors` turns every schema violation into one
line that names the offending key, so a typo never surfaces as a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import jsonschema
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = REPO_ROOT / "config" / "schema.yaml"
DEFAULT_CONFIG_PATH = REPO_ROOT / "config" / "config.yaml"


class ConfigError(ValueError):
    """The configuration does not follow config/schema.yaml."""


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"{path}: the top level must be a mapping of keys, not {type(loaded).__name__}"
        )
    return loaded


def load_schema() -> dict[str, Any]:
    return load_yaml(SCHEMA_PATH)


def _key_path(error: jsonschema.ValidationError) -> str:
    parts = [str(part) for part in error.absolute_path]
    return ".".join(parts) if parts else "(top level)"


def _describe(error: jsonschema.ValidationError) -> str:
    key = _key_path(error)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        where = f"under '{key}'" if error.absolute_path else "at the top level"
        hint = f" (known keys: {', '.join(allowed)})" if allowed else ""
        return f"unknown key {', '.join(repr(name) for name in unknown)} {where}{hint}"
    if error.validator in ("oneOf", "anyOf") and error.schema is not None:
        return f"'{key}': {_one_of_hint(error)}"
    return f"'{key}': {error.message}"


def _one_of_hint(error: jsonschema.ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, dict) else {}
    pairs = [("rate_rps", "rate_of_baseline_capacity"), ("duration_s", "requests"), ("cv", "shape")]
    for first, second in pairs:
        names = {first, second}
        if any(
            names
            <= set(option.get("required", [])) | set(option.get("not", {}).get("required", []))
            for option in error.schema.get(error.validator, [])
        ):
            given = [name for name in (first, second) if name in instance]
            if len(given) == 2:
                return f"give either '{first}' or '{second}', not both"
            return f"give one of '{first}' or '{second}'"
    return error.message


def config_errors(config: dict[str, Any], schema: dict[str, Any] | None = None) -> list[str]:
    """Every problem of `config`, one readable line each (empty when the config is valid)."""
    schema = load_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        return [_describe(error) for error in errors]
    return _consistency_errors(config)


def _consistency_errors(config: dict[str, Any]) -> list[str]:
    """Rules that span several keys, which JSON schema cannot express."""
    problems: list[str] = []
    variants = config.get("variants", {})
    scenarios = config.get("scenarios", {})
    experiment = config.get("experiment", {})
    for name in experiment.get("variants", []):
        if name not in variants:
            problems.append(f"'experiment.variants': no variant named {name!r} under 'variants'")
    reference = experiment.get("reference_variant")
    if reference is not None and reference not in variants:
        problems.append(f"'experiment.reference_variant': no variant named {reference!r}")
    for name in experiment.get("scenarios", []):
        if name not in scenarios:
            problems.append(f"'experiment.scenarios': no scenario named {name!r} under 'scenarios'")
    cpus = config.get("cpus", {})
    shared = sorted(set(cpus.get("server", [])) & set(cpus.get("loadgen", [])))
    if shared:
        problems.append(f"'cpus': server and loadgen share cores {shared}; they must be disjoint")
    server_cores = len(cpus.get("server", [])) or None
    for name, variant in variants.items():
        threads = variant.get("threads_per_worker", 0) or 1
        workers = variant.get("workers", 1)
        if server_cores and workers * threads > server_cores:
            problems.append(
                f"'variants.{name}': {workers} workers x {threads} threads exceed the "
                f"{server_cores} server core(s) in 'cpus.server'"
            )
    problems += _k3s_axes_errors(config)
    return problems


def _k3s_axes_errors(config: dict[str, Any]) -> list[str]:
    """A PodDisruptionBudget asking for more pods than the Deployment has is never met (every
    eviction, a node drain's included, waits forever): pdb_min_available <= replicas, for
    deploy.k3s and for each variant that sets its own axes (`variants.<name>.k3s`)."""
    k3s = (config.get("deploy") or {}).get("k3s") or {}
    problems = []
    replicas, pdb = k3s.get("replicas", 1), k3s.get("pdb_min_available", 1)
    if pdb > replicas:
        problems.append(
            f"'deploy.k3s': pdb_min_available {pdb} exceeds replicas {replicas}: the "
            "PodDisruptionBudget could never be met"
        )
    for name, variant in (config.get("variants") or {}).items():
        own = {k: v for k, v in ((variant or {}).get("k3s") or {}).items() if v is not None}
        if not {"replicas", "pdb_min_available"} & set(own):
            continue
        variant_replicas = own.get("replicas", replicas)
        variant_pdb = own.get("pdb_min_available", pdb)
        if variant_pdb > variant_replicas:
            inherited = [key for key in ("pdb_min_available", "replicas") if key not in own]
            note = f" ({', '.join(inherited)} from deploy.k3s)" if inherited else ""
            problems.append(
                f"'variants.{name}.k3s': pdb_min_available {variant_pdb} exceeds the variant's "
                f"replicas {variant_replicas}{note}: the PodDisruptionBudget could never be met"
            )
    return problems


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every problem of `config`."""
    problems = config_errors(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` merged key by key into `base`, as Snakemake merges a --configfile."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_config(*override_paths: str | Path) -> dict[str, Any]:
    """config/config.yaml with each file merged over it, checked; as the workflow sees it."""
    config = load_yaml(DEFAULT_CONFIG_PATH)
    for path in override_paths:
        config = deep_merge(config, load_yaml(path))
    check_config(config)
    return config


def _run_check(args: argparse.Namespace) -> int:
    from servebench.cli import UserError

    failed = False
    for path in args.files:
        try:
            if Path(path).resolve() == DEFAULT_CONFIG_PATH:
                load_config()
            else:
                load_config(path)
            print(f"{path}: valid")
        except ConfigError as error:
            failed = True
            print(f"{path}: {error}")
    if failed:
        raise UserError("some configuration files are invalid")
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-config",
        help="validate configuration files (each merged over config/config.yaml, as "
        "`snakemake --configfile FILE` does) against config/schema.yaml",
    )
    parser.add_argument("files", nargs="+", type=Path, help="YAML configuration files")
    parser.set_defaults(func=_run_check)
    reference = subparsers.add_parser(
        "config-reference", help="print the configuration reference (markdown) from the schema"
    )
    reference.set_defaults(func=_run_reference)


def _reference_rows(schema: dict[str, Any], prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows: list[tuple[str, str, str, str]] = []
    for key, node in schema.get("properties", {}).items():
        name = f"{prefix}{key}"
        kind = node.get("type", "")
        if isinstance(kind, list):
            kind = " or ".join(kind)
        if "enum" in node:
            kind = " \\| ".join(str(option) for option in node["enum"])
        elif kind == "array" and "items" in node:
            items = node["items"]
            kind = (
                f"list of {', '.join(items['enum']) if 'enum' in items else items.get('type', '')}"
            )
        default = "" if node.get("type") == "object" else json_inline(node.get("default", ""))
        description = " ".join(str(node.get("description", "")).split())
        rows.append((name, kind, default, description))
        if node.get("type") == "object" and "properties" in node:
            rows.extend(_reference_rows(node, f"{name}."))
    return rows


def json_inline(value: Any) -> str:
    import json

    return f"`{json.dumps(value)}`" if value != "" else ""


def reference_markdown(schema: dict[str, Any] | None = None) -> str:
    """docs/configuration.md, generated from config/schema.yaml (a test keeps them equal)."""
    schema = load_schema() if schema is None else schema
    lines = [
        "# Configuration reference",
        "",
        "Generated from `config/schema.yaml` by `servebench config-reference > "
        "docs/configuration.md`; do not edit by hand.",
        "",
        "| key | type | default | description |",
        "|---|---|---|---|",
    ]

    def table(rows: list[tuple[str, str, str, str]]) -> None:
        for name, kind, default, description in rows:
            cell = description.replace("|", "\\|")
            lines.append(f"| `{name}` | {kind} | {default} | {cell} |")

    table(_reference_rows(schema))
    for kind, heading in (("variant", "variants.<name>"), ("scenario", "scenarios.<name>")):
        lines += [
            "",
            f"## `{heading}`",
            "",
            " ".join(schema["$defs"][kind].get("description", "").split()),
        ]
        lines += ["", "| key | type | default | description |", "|---|---|---|---|"]
        table(_reference_rows(schema["$defs"][kind], f"{heading}."))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def _run_reference(args: argparse.Namespace) -> int:
    print(reference_markdown(), end="")
    return 0
