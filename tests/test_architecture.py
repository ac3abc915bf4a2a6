"""The package's layers: imports go one way, and no module imports itself round a cycle.

Bottom to top (docs/ARCHITECTURE.md): the foundation (configuration, settings, the results
layout, records, the run matrix), the domain (payloads, model, load generator, Bentos), the
deployment targets, the faults, the jobs; the analysis reads only the foundation (the results
tree), the report only the analysis; the command line sits on top. Every import counts, those
inside functions too: a lazy import is still a dependency.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "servebench"
WORKFLOW = Path(__file__).resolve().parents[1] / "workflow"

LAYERS = {
    "foundation": (
        "errors",
        "layout",
        "config",
        "settings",
        "records",
        "matrix",
        "fault_kinds",
        "provenance",
        "cpus",
        "net",
        "children",
        "arrivals",
        "quantiles",
        "queueing",
        "slo",
    ),
    "domain": ("payloads", "model", "loadgen", "bento"),
    "deploy": ("deploy",),
    "faults": ("faults",),
    "jobs": ("jobs",),
    "analysis": ("analysis",),
    "report": ("report",),
    "interface": ("cli", "bench"),
}
BELOW = ["foundation", "domain", "deploy", "faults", "jobs"]
ALLOWED = {
    "foundation": {"foundation"},
    "domain": {"foundation", "domain"},
    "deploy": {"foundation", "domain", "deploy"},
    "faults": {"foundation", "domain", "deploy", "faults"},
    "jobs": {"foundation", "domain", "deploy", "faults", "jobs"},
    # The analysis reads the results tree, never a job's code; the report reads the analysis.
    "analysis": {"foundation", "analysis"},
    "report": {"foundation", "analysis", "report"},
    "interface": set(LAYERS),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(path: Path, *, top_level_only: bool = False) -> set[str]:
    """The servebench modules `path` imports (`from servebench.a import b` is servebench.a.b
    when b is a module)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
            names = [n for n in names[:-1] if n in MODULES] or [node.module]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] == "servebench"}
    return {name for name in found if name in MODULES}


def layer_of(module: str) -> str:
    if module == "servebench":
        return "foundation"  # the package's __init__ holds only __version__
    first = module.split(".")[1] if "." in module else ""
    for layer, names in LAYERS.items():
        if first in names:
            return layer
    raise AssertionError(f"{module} is in no layer: place it in LAYERS (and the docs)")


def import_graph() -> dict[str, set[str]]:
    graph = {name: imports_of(path) - {name} for name, path in MODULES.items()}
    graph.pop("servebench", None)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def layering_violations(graph: dict[str, set[str]]) -> list[str]:
    return [
        f"{source} ({layer_of(source)}) imports {target} ({layer_of(target)})"
        for source, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) not in ALLOWED[layer_of(source)]
    ]


def test_every_module_has_a_layer():
    for module in import_graph():
        layer_of(module)


def test_the_package_has_no_import_cycle():
    assert cycles(import_graph()) == []


def test_imports_follow_the_layers():
    assert layering_violations(import_graph()) == []


def test_the_checks_catch_a_cycle_and_an_upward_import():
    graph = import_graph()
    graph["servebench.layout"] = graph["servebench.layout"] | {"servebench.matrix"}
    assert ["servebench.layout", "servebench.matrix"] in cycles(graph)
    graph = import_graph()
    graph["servebench.analysis.tables"] = graph["servebench.analysis.tables"] | {
        "servebench.jobs.scenario"
    }
    assert layering_violations(graph) == [
        "servebench.analysis.tables (analysis) imports servebench.jobs.scenario (jobs)"
    ]


def test_parsing_the_workflow_imports_only_the_foundation_and_the_model_name():
    """What `snakemake` loads to build the DAG (module-level imports, transitively)."""
    text = "\n".join(path.read_text() for path in [WORKFLOW.parent / "Snakefile"])
    text += "\n".join(path.read_text() for path in sorted((WORKFLOW / "rules").glob("*.smk")))
    direct = set()
    for module, names in re.findall(r"^\s*from (servebench[\w.]*) import \(?([\w, ]+)", text, re.M):
        submodules = [f"{module}.{name.strip()}" for name in names.split(",")]
        direct |= {name for name in submodules if name in MODULES} or {module}
    loaded: set[str] = set()
    todo = [name for name in direct if name in MODULES]
    while todo:
        name = todo.pop()
        if name in loaded:
            continue
        loaded.add(name)
        todo += imports_of(MODULES[name], top_level_only=True)
    allowed = {
        "servebench",
        "servebench.model",
        "servebench.model.resolve",
        "servebench.model.runtime",
        "servebench.report",
        "servebench.report.items",
    }
    beyond = sorted(
        name for name in loaded if name not in allowed and layer_of(name) != "foundation"
    )
    assert beyond == [], f"the workflow's parse imports {beyond}"


@pytest.mark.parametrize(
    "script", sorted((WORKFLOW / "scripts").glob("*.py")), ids=lambda p: p.name
)
def test_workflow_scripts_are_thin_snakemake_adapters(script):
    """The one way to run a job by hand is the `servebench` command: scripts do not parse
    arguments of their own, and their logic lives in the package."""
    text = script.read_text(encoding="utf-8")
    assert "argparse" not in text and "__main__" not in text, script.name
    assert len(text.splitlines()) <= 40, f"{script.name}: logic belongs in src/servebench"
