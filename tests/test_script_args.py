"""The workflow scripts' arguments outside Snakemake (servebench.script_args)."""

import sys

import pytest

from servebench import script_args

RUN_ARGS = ["optimized", "steady", "2", "bento.json", "payloads.csv", "out", "--capacity", "c.json"]


def test_run_args_and_config(monkeypatch, tmp_path):
    override = tmp_path / "override.yaml"
    override.write_text("results_dir: elsewhere\n", encoding="utf-8")
    monkeypatch.setattr(sys, "argv", ["loadtest.py", *RUN_ARGS, "--configfile", str(override)])
    config, args = script_args.parse_run_args("doc", "scenario")
    assert (args.variant, args.scenario, args.repetition) == ("optimized", "steady", 2)
    assert args.capacity == "c.json"
    assert config["results_dir"] == "elsewhere"


def test_bad_run_args_exit_with_usage(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["resilience.py", "optimized", "kill-worker", "two"])
    with pytest.raises(SystemExit):
        script_args.parse_run_args("doc", "fault")
    assert "invalid int value: 'two'" in capsys.readouterr().err


def test_rendering_args_put_the_baseline_runtime_first(monkeypatch):
    monkeypatch.setattr(sys, "argv", ["report_html.py", "results/model/m"])
    config, args, runtimes = script_args.parse_rendering_args("doc", "out_html", "help")
    assert args.model_dir == "results/model/m" and args.out_html is None
    assert runtimes[0] == "pytorch"
    assert sorted(runtimes) == sorted(set(["pytorch", *config["model"]["runtimes"]]))


def test_snakemake_run_inputs(tmp_path):
    from types import SimpleNamespace

    sm = SimpleNamespace(
        log=[str(tmp_path / "job.log")],
        input=SimpleNamespace(bento="b.json", payloads="p.csv", capacity=[]),
        output=SimpleNamespace(meta=str(tmp_path / "run" / "meta.json")),
    )
    assert script_args.snakemake_run_inputs(sm) == ("b.json", "p.csv", tmp_path / "run", None)
