"""Configuration: loading, merging, validation against config/schema.yaml, defaults.

One check for the workflow (at start, workflow/rules/common.smk), `servebench check-config`
and every command that reads a config: `config_errors` turns every schema violation and every
rule across keys into one line that names the offending key, so a typo never surfaces as a
traceback. Defaults live in the schema only: `apply_defaults` fills them in, and code reads
the keys of a checked config without defaults of its own.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from servebench.cpus import assign_cpus, cpu_problems, usable_cpus
from servebench.errors import ConfigError
from servebench.fault_kinds import FAULT_KINDS, faults_for_target, faults_of

REPO_ROOT = Path(__file__).resolve().parents[2]
# The files an installed `servebench` needs wherever it runs. In a checkout,
# src/servebench/bundled/ holds links to config/, data/ and report/ (the one copy everyone
# edits), so these resolve to config/schema.yaml, config/config.yaml and data/texts.csv (and
# servebench.report.items.REPORT_DIR to report/); building a wheel
# copies what the links point at into the package (tests/test_install.py compares them).
BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
SCHEMA_PATH = (BUNDLED_DIR / "schema.yaml").resolve()
DEFAULT_CONFIG_PATH = (BUNDLED_DIR / "config.yaml").resolve()
# The project's own corpus (data/README.md): the default payloads (data.source: bundled) and
# the synthetic tokenizer's training texts.
BUNDLED_CORPUS = (BUNDLED_DIR / "texts.csv").resolve()


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


def payload_source_path(source: str, repo_root: Path = REPO_ROOT) -> Path | None:
    """The local file behind a data.source (None for hf:)."""
    if source == "bundled":
        return BUNDLED_CORPUS
    if source.startswith("csv:"):
        path = Path(source[4:]).expanduser()
        return path if path.is_absolute() else repo_root / path
    return None


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
    if "propertyNames" in error.relative_schema_path:  # a name under variants, scenarios ...
        return (
            f"'{key}': the name {error.instance!r} is not allowed: names become folders of the"
            " results tree, so letters, digits, '.', '_' and '-' only, starting with a letter or"
            " a digit, at most 64 characters"
        )
    if error.validator == "pattern" and error.validator_value == "^auto$":
        return f"'{key}': expected auto or a list of core numbers, not {error.instance!r}"
    if error.validator in ("oneOf", "anyOf") and error.schema is not None:
        return f"'{key}': {_one_of_hint(error)}"
    return f"'{key}': {error.message}"


def _one_of_hint(error: jsonschema.ValidationError) -> str:
    instance = error.instance if isinstance(error.instance, dict) else {}
    pairs = [("rate_rps", "utilization"), ("duration_s", "requests"), ("cv", "shape")]
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


def config_errors(
    config: dict[str, Any], schema: dict[str, Any] | None = None, *, server_here: bool = True
) -> list[str]:
    """Every problem of `config`, one readable line each (empty when the config is valid).
    Rules across keys are checked on a copy with the schema's defaults filled in.
    `server_here`: False for a command that pins no server on this machine (servebench
    loadtest, calibrate), whose cpus.server then need not exist."""
    schema = load_schema() if schema is None else schema
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda error: list(error.absolute_path))
    if errors:
        return [_describe(error) for error in errors]
    filled = _fill_defaults(copy.deepcopy(config), schema)
    # A cluster's pods do not run on this machine's cores.
    server_here = server_here and filled["deploy"]["target"] in ("local", "docker")
    cpus = cpu_problems(
        filled["cpus"]["server"],
        filled["cpus"]["loadgen"],
        usable_cpus(),
        server_runs_here=server_here,
    )
    _resolve_cpus(filled)
    return (
        cpus
        + _consistency_errors(filled, server_here)
        + _k3s_axes_errors(filled)
        + _resilience_errors(filled)
    )


def _consistency_errors(config: dict[str, Any], server_here: bool = True) -> list[str]:
    """Rules that span several keys, which JSON schema cannot express."""
    problems: list[str] = []
    variants, scenarios = config["variants"], config["scenarios"]
    experiment = config["experiment"]
    if config["deploy"]["target"] == "external":
        # An external variant is a name and a URL: nothing of `variants` is built or served.
        problems += _external_url_errors(config)
        variants = {}
    else:
        for name in experiment["variants"]:
            if name not in variants:
                problems.append(
                    f"'experiment.variants': no variant named {name!r} under 'variants'"
                )
        reference = experiment["reference_variant"]
        if reference not in variants:
            problems.append(f"'experiment.reference_variant': no variant named {reference!r}")
    for name in experiment["scenarios"]:
        if name not in scenarios:
            problems.append(f"'experiment.scenarios': no scenario named {name!r} under 'scenarios'")
    server_cores = len(config["cpus"]["server"])
    for name, variant in variants.items() if server_here and server_cores else ():
        threads = variant["threads_per_worker"] or 1
        if variant["workers"] * threads > server_cores:
            problems.append(
                f"'variants.{name}': {variant['workers']} workers x {threads} threads exceed "
                f"the {server_cores} server core(s) in 'cpus.server'"
            )
    return problems


def _external_url_errors(config: dict[str, Any]) -> list[str]:
    """On the external target every variant a job serves needs its URL (deploy.external.urls):
    the experiment's, its reference and the resilience variants' Bento variants."""
    urls = config["deploy"]["external"]["urls"]
    needed = {name: "experiment.variants" for name in config["experiment"]["variants"]}
    needed.setdefault(config["experiment"]["reference_variant"], "experiment.reference_variant")
    if config["resilience"]["enabled"]:
        for name, variant in config["resilience"]["variants"].items():
            needed.setdefault(variant["variant"], f"resilience.variants.{name}.variant")
    missing = [(name, where) for name, where in needed.items() if name not in urls]
    return [
        f"'deploy.external.urls': no URL for variant {name!r} ({where}); deploy.target external "
        "serves each variant from its URL, e.g. deploy.external.urls: "
        f"{{{name}: http://HOST:PORT}}"
        for name, where in missing
    ]


def _k3s_axes_errors(config: dict[str, Any]) -> list[str]:
    """A PodDisruptionBudget asking for more pods than the Deployment has is never met (every
    eviction, a node drain's included, waits forever): pdb_min_available <= replicas, for
    deploy.k3s and for each variant that sets its own axes (`variants.<name>.k3s`). Null (the
    default: maxUnavailable 1) is met at any replica count."""
    k3s = config["deploy"]["k3s"]
    problems = []
    replicas, pdb = k3s["replicas"], k3s["pdb_min_available"]
    if pdb is not None and pdb > replicas:
        problems.append(
            f"'deploy.k3s': pdb_min_available {pdb} exceeds replicas {replicas}: the "
            "PodDisruptionBudget could never be met"
        )
    for name, variant in config["variants"].items():
        own = {k: v for k, v in (variant.get("k3s") or {}).items() if v is not None}
        if not {"replicas", "pdb_min_available"} & set(own):
            continue
        variant_replicas = own.get("replicas", replicas)
        variant_pdb = own.get("pdb_min_available", pdb)
        if variant_pdb is not None and variant_pdb > variant_replicas:
            inherited = [key for key in ("pdb_min_available", "replicas") if key not in own]
            note = f" ({', '.join(inherited)} from deploy.k3s)" if inherited else ""
            problems.append(
                f"'variants.{name}.k3s': pdb_min_available {variant_pdb} exceeds the variant's "
                f"replicas {variant_replicas}{note}: the PodDisruptionBudget could never be met"
            )
    return problems


def _resilience_errors(config: dict[str, Any]) -> list[str]:
    """Rules of the resilience section that the schema cannot see (they used to run only in
    the workflow; `servebench check-config` runs them too)."""
    resilience = config["resilience"]
    if not resilience["enabled"]:
        return []
    problems = []
    target = config["deploy"]["target"]
    if resilience["scenario"] not in config["scenarios"]:
        problems.append(f"'resilience.scenario': no scenario named {resilience['scenario']!r}")
    for name, variant in resilience["variants"].items():
        # External: the variant's URL is checked with the experiment's (_external_url_errors).
        if variant["variant"] not in config["variants"] and target != "external":
            problems.append(
                f"'resilience.variants.{name}.variant': no variant named {variant['variant']!r}"
            )
    runs_here = faults_for_target(config)
    for name in runs_here:  # faults of another target are skipped: they never run here
        if resilience["faults"][name]["at_s"] >= resilience["duration_s"]:
            problems.append(
                f"'resilience.faults.{name}.at_s' must be before the run's end "
                f"(resilience.duration_s {resilience['duration_s']:g} s)"
            )
    if not runs_here and faults_of(target):
        # Faults of another target are skipped (a profile cannot remove config.yaml's faults),
        # but a resilience stage without a single fault of its target is a mistake.
        others = "; ".join(
            f"{name}: {'/'.join(FAULT_KINDS[fault['kind']].targets)} only"
            for name, fault in resilience["faults"].items()
        )
        problems.append(
            f"'resilience.faults': none applies to deploy.target {target!r}"
            f"{f' ({others})' if others else ''}; add one of {', '.join(faults_of(target))} "
            "or set resilience.enabled: false"
        )
    return problems


def check_config(config: dict[str, Any], *, server_here: bool = True) -> None:
    """Raise ConfigError listing every problem of `config`."""
    problems = config_errors(config, server_here=server_here)
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


def _validator_filling_defaults() -> type:
    """A JSON-schema validator that inserts each missing property's `default` before it
    validates an object (objects default to {}, so nested defaults fill in too)."""
    base = jsonschema.Draft202012Validator
    validate_properties = base.VALIDATORS["properties"]

    def properties(validator: Any, props: dict, instance: Any, schema: dict) -> Any:
        if isinstance(instance, dict):
            for name, subschema in props.items():
                if "default" in subschema and name not in instance:
                    instance[name] = copy.deepcopy(subschema["default"])
        yield from validate_properties(validator, props, instance, schema)

    return jsonschema.validators.extend(base, {"properties": properties})


def _fill_defaults(config: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    for _ in _validator_filling_defaults()(schema).iter_errors(config):
        pass
    return config


def _resolve_cpus(config: dict[str, Any]) -> None:
    """`cpus.server` / `cpus.loadgen` as the lists they mean on this machine (`auto` resolved
    against the cores this process may use), so that every reader of config["cpus"] gets
    lists. config_errors says when they do not fit the machine."""
    cpus = config.get("cpus")
    if isinstance(cpus, dict) and {"server", "loadgen"} <= set(cpus):
        cpus["server"], cpus["loadgen"] = assign_cpus(
            cpus["server"], cpus["loadgen"], usable_cpus()
        )


def apply_defaults(config: dict[str, Any], schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fill in the schema's defaults for every key `config` leaves out, in place (the workflow's
    `config` is Snakemake's own dict), and resolve `cpus: auto` to core lists; returns it. Call
    it on a checked config."""
    schema = load_schema() if schema is None else schema
    _fill_defaults(config, schema)
    _resolve_cpus(config)
    return config


def schema_defaults(*keys: str) -> Any:
    """The schema's defaults of a section (e.g. `schema_defaults("loadgen", "validity")`), for
    code called outside a workflow without a config of its own."""
    value: Any = apply_defaults({})
    for key in keys:
        value = value[key]
    return value


def variant_defaults(runtime: str) -> dict[str, Any]:
    """A variant of `runtime` with every other knob at the schema's default."""
    return apply_defaults({"variants": {"v": {"runtime": runtime}}})["variants"]["v"]


def load_config(*override_paths: str | Path, server_here: bool = True) -> dict[str, Any]:
    """config/config.yaml with each file merged over it, checked, defaults filled in: the
    config as the workflow sees it. `server_here=False`: for commands that pin no server here
    (config_errors)."""
    config = load_yaml(DEFAULT_CONFIG_PATH)
    for path in override_paths:
        config = deep_merge(config, load_yaml(path))
    check_config(config, server_here=server_here)
    return apply_defaults(config)


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
