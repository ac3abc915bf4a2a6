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
        raise ConfigError(f"{path}: the top level must be a mapping of keys, not {type(loaded).__name__}")
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
            names <= set(option.get("required", [])) | set(option.get("not", {}).get("required", []))
            for option in error.schema.get(error.validator, [])
        ):
            given = [name for name in (first, second) if name in instance]
            if len(given) == 2:
                return f"give either '{first}' or '{second}', not both"
            return f"give one of '{first}' or '{second}'"
    return error.message


def config_errors(config: dict[str, Any], schema: dict[str, Any] | None = None) -> list[str]:
    """Every violation of the schema, one readable line each (empty when the config is valid)."""
    schema = load_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    return [_describe(error) for error in errors]


def check_config(config: dict[str, Any]) -> None:
    """Raise ConfigError listing every problem of `config`."""
    problems = config_errors(config)
    if problems:
        raise ConfigError("invalid configuration:\n  - " + "\n  - ".join(problems))


def _run_check(args: argparse.Namespace) -> int:
    from servebench.cli import UserError

    try:
        for path in args.files:
            check_config(load_yaml(path))
            print(f"{path}: valid")
    except ConfigError as error:
        raise UserError(str(error)) from None
    return 0


def add_subcommand(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "check-config", help="validate configuration files against config/schema.yaml"
    )
    parser.add_argument("files", nargs="+", type=Path, help="YAML configuration files")
    parser.set_defaults(func=_run_check)
