"""Model preparation on a tiny synthetic RoBERTa: resolution order, tokenizer, runtimes,
fidelity gate, ISA choice, payloads, in-process bench. Offline (HF_HUB_OFFLINE=1, conftest)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from servebench.config import schema_defaults
from servebench.model import bench, build, fidelity, resolve, synthetic, tokens
from servebench.model.runtime import RuntimeLoadError, load_runtime, read_provenance
from servebench.payloads import load_payloads, read_texts, write_payloads

REPO_ROOT = Path(__file__).resolve().parents[1]
OFFLINE = lambda: (False, "tests: offline")  # noqa: E731

TINY = {
    "id": "servebench/tiny-roberta-does-not-exist",
    "local_dir": "",
    "fallback": "synthetic",
    "synthetic": {
        "num_hidden_layers": 2,
        "hidden_size": 64,
        "num_attention_heads": 2,
        "intermediate_size": 128,
        "vocab_size": 1000,
        "max_position_embeddings": 130,
        "labels": ["negative", "neutral", "positive"],
        "seed": 0,
        "initializer_range": 0.1,
    },
    "quantization": {"isa": "auto", "per_channel": True},
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """300 texts of the bundled corpus (the synthetic tokenizer's training set)."""
    frame = pd.read_csv(REPO_ROOT / "data" / "texts.csv").head(300)
    path = tmp_path_factory.mktemp("corpus") / "texts.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def texts(corpus) -> list[str]:
    return read_texts(corpus)


@pytest.fixture(scope="module")
def runtimes(tmp_path_factory, corpus) -> Path:
    """pytorch, onnx and onnx-int8 runtimes of the tiny model, under <tmp>/<model name>/."""
    resolution = resolve.resolve_model(TINY, check_hub=OFFLINE)
    root = tmp_path_factory.mktemp("model") / resolution.name
    build.prepare_pytorch(
        TINY, root / "pytorch", corpus_path=corpus, resolution=resolution, measure_load=False
    )
    build.export_onnx(root / "pytorch", root / "onnx", measure_load=False)
    # The one runtime whose load is measured (in a subprocess) here.
    build.quantize_onnx(root / "onnx", root / "onnx-int8", per_channel=True, measure_load=True)
    return root


# --------------------------------------------------------------------------- resolution


def test_local_dir_comes_first(runtimes):
    def must_not_be_called(*args):
        raise AssertionError("the hub is consulted although model.local_dir is set")

    config = {**TINY, "local_dir": str(runtimes / "pytorch" / "files")}
    resolution = resolve.resolve_model(
        config, check_hub=must_not_be_called, cached_snapshot=must_not_be_called
    )
    assert (resolution.kind, resolution.weights) == ("local", "real")
    assert resolution.name == "local-files"
    assert resolution.path == str((runtimes / "pytorch" / "files").resolve())


def test_local_dir_that_is_not_a_model_is_an_error(tmp_path):
    with pytest.raises(resolve.ModelUnavailableError, match="not a save_pretrained directory"):
        resolve.resolve_model({**TINY, "local_dir": str(tmp_path)}, check_hub=OFFLINE)


def test_hf_cache_comes_before_the_hub(tmp_path):
    resolution = resolve.resolve_model(
        {**TINY, "id": "org/some-model"},
        check_hub=lambda: pytest.fail("hub consulted although the model is cached"),
        cached_snapshot=lambda model_id: tmp_path,
    )
    assert (resolution.kind, resolution.weights, resolution.name) == (
        "hf-cache",
        "real",
        "org--some-model",
    )


def test_reachable_hub_with_the_model(tmp_path):
    resolution = resolve.resolve_model(
        {**TINY, "id": "org/some-model"},
        check_hub=lambda: (True, "reachable"),
        check_model=lambda model_id: (True, "found"),
        cached_snapshot=lambda model_id: None,
    )
    assert (resolution.kind, resolution.weights) == ("hf-hub", "real")


def test_offline_hub_falls_back_to_synthetic():
    resolution = resolve.resolve_model(TINY, check_hub=OFFLINE, cached_snapshot=lambda _: None)
    assert (resolution.kind, resolution.weights) == ("synthetic", "synthetic")
    assert resolution.name == "synthetic-roberta-2l-64h"
    assert "tests: offline" in resolution.reason
    defaults = schema_defaults("model")
    base = resolve.resolve_model(defaults, check_hub=OFFLINE, cached_snapshot=lambda _: None)
    assert base.name == "synthetic-roberta-base"
    assert base.synthetic["hidden_size"] == 768 and base.synthetic["vocab_size"] == 50265


def test_hub_without_the_model_falls_back_to_synthetic():
    resolution = resolve.resolve_model(
        TINY,
        check_hub=lambda: (True, "reachable"),
        check_model=lambda model_id: (False, "RepositoryNotFoundError"),
        cached_snapshot=lambda _: None,
    )
    assert resolution.kind == "synthetic"
    assert "RepositoryNotFoundError" in resolution.reason


def test_offline_hub_without_fallback_is_a_clear_error():
    with pytest.raises(resolve.ModelUnavailableError) as raised:
        resolve.resolve_model(
            {**TINY, "fallback": "none"}, check_hub=OFFLINE, cached_snapshot=lambda _: None
        )
    message = str(raised.value)
    assert "tiny-roberta-does-not-exist" in message and "model.fallback" in message


def test_offline_is_detected_from_the_environment(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve.hub_reachable() == (False, "HF_HUB_OFFLINE is set")


def test_unreachable_endpoint_is_reported(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("TRANSFORMERS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: nothing listens
    reachable, reason = resolve.hub_reachable(timeout_s=1.0)
    assert not reachable and "127.0.0.1:9" in reason


def test_resolution_change_since_workflow_start_is_an_error(tmp_path, corpus):
    with pytest.raises(resolve.ModelUnavailableError, match="run the workflow again"):
        build.prepare_pytorch(
            TINY, tmp_path / "pytorch", corpus_path=corpus, expected_name="org--real-model"
        )


def test_safe_name():
    assert (
        resolve.safe_name("cardiffnlp/twitter-roberta-base") == "cardiffnlp--twitter-roberta-base"
    )
    assert resolve.safe_name("a b/c?d") == "a-b--c-d"


# --------------------------------------------------------------------------- tokenizer


def test_tokenizer_round_trip(tmp_path, texts):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer

    synthetic.train_tokenizer(texts, vocab_size=1000, max_length=128, out_dir=tmp_path)
    tokenizer = AutoTokenizer.from_pretrained(tmp_path)
    backend = Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tokenizer.is_fast and len(tokenizer) <= 1000
    assert [tokenizer.convert_tokens_to_ids(t) for t in synthetic.SPECIAL_TOKENS] == [0, 1, 2, 3, 4]
    unseen = "Ünïcode ✓ and emoji 🤗, tabs\tand  double  spaces — never in the corpus"
    for text in [*texts[:50], unseen]:
        ids = tokenizer(text)["input_ids"]
        assert ids[0] == tokenizer.bos_token_id and ids[-1] == tokenizer.eos_token_id
        assert tokenizer.decode(ids, skip_special_tokens=True) == text
        assert backend.encode(text).ids == ids  # what load_runtime tokenizes with
    assert (tmp_path / "vocab.json").is_file() and (tmp_path / "merges.txt").is_file()


def test_bpe_training_is_deterministic_across_processes(texts):
    code = (
        "import hashlib, json, sys\n"
        "from servebench.model.synthetic import train_bpe\n"
        "texts = json.load(sys.stdin)\n"
        "vocab, merges = train_bpe(texts, 800)\n"
        "print(hashlib.sha256(json.dumps([vocab, merges]).encode()).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code],
            input=json.dumps(texts[:150]),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for _ in range(2)
    }
    assert len(digests) == 1


# --------------------------------------------------------------------------- runtimes


def test_runtimes_agree_and_follow_the_contract(runtimes, texts):
    reference = load_runtime(runtimes / "pytorch", threads=1)
    reference_probabilities = fidelity.predict_payloads(reference, texts)
    counts = np.bincount(reference_probabilities.argmax(axis=1), minlength=3)
    assert (counts > 0.1 * len(texts)).all(), f"degenerate synthetic head: {counts}"
    for runtime, min_agreement, max_diff in (("onnx", 1.0, 1e-4), ("onnx-int8", 0.9, 0.5)):
        classifier = load_runtime(runtimes / runtime, threads=1)
        assert classifier.labels == ["negative", "neutral", "positive"]
        probabilities = fidelity.predict_payloads(classifier, texts)
        np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-6)
        report = fidelity.fidelity_report(
            reference_probabilities,
            probabilities,
            classifier.labels,
            weights="synthetic",
            tie_margin=1e-4,
        )
        # Near-ties (reference margin <= 1e-4) are decided by each CPU's kernels: not judged.
        assert report["decisive_agreement"] >= min_agreement, (runtime, report)
        assert report["max_abs_prob_diff"] <= max_diff, (runtime, report)
        assert report["accuracy"] is None  # synthetic weights: no accuracy claimed
        answer = classifier.classify(["a short text", ""])
        assert [set(item) for item in answer] == [{"label", "score", "scores"}] * 2
        assert answer[0]["score"] == max(answer[0]["scores"].values())
        assert classifier.predict_proba([]).shape == (0, 3)
        with pytest.raises(TypeError):
            classifier.predict_proba("not a list")


def test_long_texts_are_truncated_at_the_max_length(runtimes):
    classifier = load_runtime(runtimes / "onnx-int8", threads=1)
    input_ids, attention_mask = classifier.encode(["word " * 1000, "short"])
    assert input_ids.shape == (2, classifier.max_length) == (2, 128)
    assert attention_mask[1].sum() < 10  # padded to the batch's longest
    assert classifier.predict_proba(["word " * 1000]).shape == (1, 3)


def test_provenance_records_source_sizes_hashes_and_isa(runtimes):
    pytorch = read_provenance(runtimes / "pytorch")
    assert pytorch["weights"] == "synthetic" and pytorch["source"] == "synthetic"
    assert pytorch["model_name"] == runtimes.name
    assert pytorch["tokenizer_vocab_size"] <= pytorch["model_vocab_size"] == 1000
    assert ("vocab_note" in pytorch) == (pytorch["tokenizer_vocab_size"] < 1000)
    assert pytorch["environment"]["packages"]["torch"]
    for runtime in ("pytorch", "onnx", "onnx-int8"):
        provenance = read_provenance(runtimes / runtime)
        files = runtimes / runtime / "files"
        assert provenance["size_on_disk_bytes"] == sum(
            entry["bytes"] for entry in provenance["files"].values()
        )
        model_file = provenance["model_file"]
        assert provenance["files"][model_file]["sha256"] == build.file_sha256(files / model_file)
    quantization = read_provenance(runtimes / "onnx-int8")["quantization"]
    assert quantization["isa"] in build.QUANTIZATION_ISAS
    assert quantization["per_channel"] is True
    load = read_provenance(runtimes / "onnx-int8")["load"]
    assert load["peak_rss_bytes"] >= load["rss_after_load_bytes"] > load["rss_before_load_bytes"]


def test_onnx_runtimes_load_without_torch(runtimes):
    code = (
        "import sys\n"
        "from servebench.model.runtime import load_runtime\n"
        f"load_runtime({str(runtimes / 'onnx-int8')!r}, threads=1).classify(['hi'])\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_onnx_default_threads_stay_on_the_process_cores(runtimes):
    """Left to itself, ONNX Runtime pins its threads to every core, out of `taskset`'s mask:
    a server pinned to one core must keep every thread on that core."""
    core = min(os.sched_getaffinity(0))
    code = (
        "import os\n"
        "from servebench.model.runtime import load_runtime\n"
        f"classifier = load_runtime({str(runtimes / 'onnx-int8')!r})\n"
        "classifier.classify(['hi there'] * 8)\n"
        "tasks = os.listdir('/proc/self/task')\n"
        "print(sorted({c for t in tasks for c in os.sched_getaffinity(int(t))}))\n"
    )
    result = subprocess.run(
        ["taskset", "-c", str(core), sys.executable, "-c", code], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"[{core}]"


def test_a_directory_without_provenance_is_not_a_runtime(tmp_path):
    with pytest.raises(RuntimeLoadError, match="not a prepared runtime directory"):
        load_runtime(tmp_path)


# --------------------------------------------------------------------------- fidelity gate


def _corrupt(runtimes: Path, tmp_path: Path) -> Path:
    """A copy of the onnx runtime whose classifier output layer is scrambled."""
    import shutil

    import onnx
    from onnx import numpy_helper

    corrupted = tmp_path / "onnx-corrupted"
    shutil.copytree(runtimes / "onnx", corrupted)
    path = corrupted / "files" / "model.onnx"
    graph = onnx.load(str(path))
    rng = np.random.default_rng(0)
    changed = 0
    for index, tensor in enumerate(graph.graph.initializer):
        values = numpy_helper.to_array(tensor)
        if values.ndim == 2 and 3 in values.shape and values.dtype == np.float32:
            noisy = values + rng.normal(0.0, 10 * values.std(), values.shape).astype(np.float32)
            graph.graph.initializer[index].CopyFrom(numpy_helper.from_array(noisy, tensor.name))
            changed += 1
    assert changed, "no classifier output weights found to corrupt"
    onnx.save(graph, str(path))
    return corrupted


GATE = {"min_label_agreement": 0.99, "tie_margin": 1e-4}


def test_fidelity_gate_passes_a_faithful_runtime(runtimes, corpus, tmp_path):
    payloads = tmp_path / "payloads.csv"
    write_payloads({"source": f"csv:{corpus}", "n_requests": 120, "seed": 3}, payloads)
    for runtime in ("pytorch", "onnx"):
        fidelity.write_predictions(
            runtimes / runtime, payloads, runtimes / runtime / "payload_probabilities.csv"
        )
    report = fidelity.write_fidelity(
        runtimes / "onnx",
        runtimes / "pytorch",
        runtimes / "onnx" / "payload_probabilities.csv",
        runtimes / "pytorch" / "payload_probabilities.csv",
        payloads,
        tmp_path / "fidelity.json",
        GATE,
    )
    assert report["passed"] and report["decisive_agreement"] == 1.0
    assert json.loads((tmp_path / "fidelity.json").read_text())["runtime"] == "onnx"


def test_fidelity_gate_fails_a_corrupted_runtime(runtimes, corpus, tmp_path):
    corrupted = _corrupt(runtimes, tmp_path)
    payloads = tmp_path / "payloads.csv"
    write_payloads({"source": f"csv:{corpus}", "n_requests": 120, "seed": 3}, payloads)
    for runtime_dir in (runtimes / "pytorch", corrupted):
        fidelity.write_predictions(runtime_dir, payloads, runtime_dir / "payload_probabilities.csv")
    out_json = corrupted / "fidelity.json"
    with pytest.raises(fidelity.FidelityError, match="fidelity gate failed: runtime onnx agrees"):
        fidelity.write_fidelity(
            corrupted,
            runtimes / "pytorch",
            corrupted / "payload_probabilities.csv",
            runtimes / "pytorch" / "payload_probabilities.csv",
            payloads,
            out_json,
            GATE,
        )
    assert not out_json.exists()  # no fidelity.json: downstream rules never run
    failed = json.loads((corrupted / "fidelity.failed.json").read_text())
    assert failed["passed"] is False and failed["label_agreement"] < 0.99
    assert len(failed["disagreement_ids"]) == min(failed["n_disagreements"], 50)


def test_accuracy_and_macro_f1_only_for_real_weights():
    reference = np.array([[0.9, 0.05, 0.05], [0.1, 0.8, 0.1], [0.1, 0.2, 0.7], [0.6, 0.3, 0.1]])
    labels = ["negative", "neutral", "positive"]
    truth = ["negative", "neutral", "positive", "positive"]
    real = fidelity.fidelity_report(reference, reference, labels, true_labels=truth, weights="real")
    assert real["accuracy"] == 0.75
    assert real["macro_f1"] == pytest.approx((2 / 3 + 1 + 2 / 3) / 3)
    synthetic = fidelity.fidelity_report(
        reference, reference, labels, true_labels=truth, weights="synthetic"
    )
    assert synthetic["accuracy"] is None and "synthetic" in synthetic["accuracy_note"]
    flipped = reference[:, ::-1]
    report = fidelity.fidelity_report(reference, flipped, labels)
    assert report["label_agreement"] == 0.25 and report["n_disagreements"] == 3
    with pytest.raises(fidelity.FidelityError, match="25.00% of the 4 payloads"):
        fidelity.check_fidelity(report, "onnx-int8", 0.99)


def test_a_flip_on_a_near_tie_is_a_tie_not_a_disagreement_the_gate_judges():
    labels = ["negative", "neutral", "positive"]
    reference = np.array([[0.5, 0.49999, 0.00001], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
    near_tie_flipped = np.array([[0.49999, 0.5, 0.00001], [0.8, 0.1, 0.1], [0.1, 0.2, 0.7]])
    report = fidelity.fidelity_report(reference, near_tie_flipped, labels, tie_margin=1e-4)
    assert report["n_disagreements"] == 1 and report["n_ties"] == 1
    assert report["decisive_agreement"] == 1.0 and report["label_agreement"] == pytest.approx(2 / 3)
    fidelity.check_fidelity(report, "onnx", 0.99)  # passes: the flip is the kernels' call
    decisive_flip = reference.copy()
    decisive_flip[1] = [0.1, 0.8, 0.1]  # a clear answer changed
    report = fidelity.fidelity_report(reference, decisive_flip, labels, tie_margin=1e-4)
    assert report["decisive_agreement"] < 1.0
    with pytest.raises(fidelity.FidelityError):
        fidelity.check_fidelity(report, "onnx", 0.99)


# --------------------------------------------------------------------------- ISA choice


@pytest.mark.parametrize(
    ("flags", "machine", "expected"),
    [
        (["sse4_2", "avx2", "avx512f", "avx512_vnni", "amx_int8"], "x86_64", "avx512_vnni"),
        (["sse4_2", "avx2", "fma"], "x86_64", "avx2"),
        (["sse4_2", "avx2", "avx512f", "avx512bw"], "x86_64", "avx2"),
        (["fp", "asimd", "asimddp"], "aarch64", "arm64"),
        (["fpu", "sse2"], "x86_64", "arm64"),
    ],
)
def test_quantization_isa_from_cpu_flags(flags, machine, expected):
    assert build.choose_quantization_isa(flags, machine) == expected


def test_quantization_configs_per_isa():
    from onnxruntime.quantization import QuantType

    vnni = build.quantization_config("avx512_vnni")
    avx2 = build.quantization_config("avx2", per_channel=True)
    assert (vnni.activations_dtype, vnni.weights_dtype) == (QuantType.QUInt8, QuantType.QInt8)
    assert avx2.weights_dtype == QuantType.QUInt8 and avx2.per_channel
    assert not vnni.is_static
    with pytest.raises(ValueError, match="unknown quantization ISA"):
        build.quantization_config("avx9000")


def test_configured_isa_overrides_the_cpu(runtimes, tmp_path):
    provenance = build.build_runtime(
        "onnx-int8",
        tmp_path / "onnx-int8",
        model_config={"quantization": {"isa": "avx2", "per_channel": False}},
        source_dir=runtimes / "onnx",
    )
    assert provenance["quantization"]["isa"] == "avx2"
    assert provenance["quantization"]["isa_chosen_from"] == "config"
    assert load_runtime(tmp_path / "onnx-int8", threads=1).predict_proba(["ok"]).shape == (1, 3)


# --------------------------------------------------------------------------- payloads, bench


def test_payloads_are_a_seeded_subset(corpus, tmp_path):
    first = load_payloads(f"csv:{corpus}", 50, seed=1)
    again = load_payloads(f"csv:{corpus}", 50, seed=1)
    other = load_payloads(f"csv:{corpus}", 50, seed=2)
    assert list(first.columns) == ["id", "text", "label"] and len(first) == 50
    assert first.equals(again) and not first["id"].equals(other["id"])
    assert first["id"].is_unique
    assert len(load_payloads(f"csv:{corpus}", 10_000, seed=1)) == 300
    no_text = tmp_path / "no_text.csv"
    pd.DataFrame({"body": ["x"]}).to_csv(no_text, index=False)
    with pytest.raises(ValueError, match="no 'text' column"):
        load_payloads(f"csv:{no_text}", 5, seed=1)
    with pytest.raises(ValueError, match="does not exist"):
        load_payloads(f"csv:{tmp_path / 'missing.csv'}", 5, seed=1)


def test_hf_payloads_offline_are_a_clear_error():
    with pytest.raises(ValueError, match="hub cannot provide it"):
        load_payloads("hf:Sp1786/Multiclass-Sentiment-Analysis-Dataset", 10, seed=1)


def test_token_lengths(runtimes, corpus, tmp_path):
    payloads = tmp_path / "payloads.csv"
    frame = write_payloads({"source": f"csv:{corpus}", "n_requests": 40, "seed": 1}, payloads)
    frame.loc[len(frame)] = ["long", "word " * 500, ""]
    frame.to_csv(payloads, index=False)
    summary = tokens.write_token_lengths(
        payloads, runtimes / "pytorch", tmp_path / "lengths.csv", tmp_path / "summary.json"
    )
    lengths = pd.read_csv(tmp_path / "lengths.csv")
    assert len(lengths) == 41 and summary["n_texts"] == 41
    assert summary["n_truncated"] == lengths["truncated"].sum() == (lengths["n_tokens"] > 128).sum()
    assert lengths.set_index("id").loc["long", "truncated"]
    assert summary["max_tokens"] == lengths["n_tokens"].max() >= 502  # "word" x 500 + <s> </s>
    assert summary["max_length"] == 128
    assert summary["min_tokens"] >= 3  # <s> text </s>


def test_inprocess_bench_rows(runtimes, texts):
    affinity = os.sched_getaffinity(0)
    try:
        rows = bench.inprocess_bench(
            runtimes / "onnx-int8",
            texts,
            batch_sizes=[1, 4],
            cpus=[sorted(affinity)[0]],
            warmup_batches=1,
            min_batches=3,
            min_duration_s=0.0,
        )
        assert os.sched_getaffinity(0) == {sorted(affinity)[0]}
    finally:
        os.sched_setaffinity(0, affinity)
    assert [(row["batch_size"], row["threads"]) for row in rows] == [(1, 1), (4, 1)]
    for row in rows:
        assert row["runtime"] == "onnx-int8" and row["n_batches"] >= 3
        assert 0 < row["min_ms"] <= row["median_ms"] <= row["p99_ms"]
        assert row["sequences_per_s"] > 0


def test_bench_thread_counts():
    assert bench.bench_thread_counts(1) == [1]
    assert bench.bench_thread_counts(4) == [1, 2, 4]
    assert bench.bench_thread_counts(6) == [1, 2, 4, 6]


# --------------------------------------------------------------------------- CUDA


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("runtime", ["pytorch-cuda-fp16", "onnx-cuda-fp16"])
def test_cuda_fp16_runtimes(runtimes, texts, tmp_path, runtime):
    source = runtimes / ("pytorch" if runtime.startswith("pytorch") else "onnx")
    build.convert_fp16(source, tmp_path / runtime, runtime)
    reference = fidelity.predict_payloads(load_runtime(runtimes / "pytorch"), texts)
    candidate = fidelity.predict_payloads(load_runtime(tmp_path / runtime), texts)
    report = fidelity.fidelity_report(reference, candidate, ["negative", "neutral", "positive"])
    assert report["label_agreement"] >= 0.95


def test_cuda_runtime_without_a_gpu_is_a_clear_error(runtimes, tmp_path):
    if _cuda_available():
        pytest.skip("a CUDA device is present")
    build.convert_fp16(runtimes / "pytorch", tmp_path / "pytorch-cuda-fp16", "pytorch-cuda-fp16")
    with pytest.raises(RuntimeLoadError, match="needs a CUDA device"):
        load_runtime(tmp_path / "pytorch-cuda-fp16")


def test_tiny_profile_keeps_the_test_copy_of_the_config_in_sync():
    """TINY above mirrors .test/config.yaml's model section (so the tests test the profile)."""
    import yaml

    profile = yaml.safe_load((REPO_ROOT / ".test" / "config.yaml").read_text())["model"]
    expected = copy.deepcopy(TINY)
    expected.pop("quantization")
    assert {key: profile[key] for key in expected} == expected


@pytest.mark.e2e
def test_tiny_profile_model_stage_end_to_end(study_run):
    """The model stage of the session's tiny study (`snakemake all` on the tiny profile, run
    once for all tests): every output, no network."""
    results_dir, output = study_run
    assert "SYNTHETIC model synthetic-roberta-2l-64h" in output  # the loud fallback
    model_dir = results_dir / "model" / "synthetic-roberta-2l-64h"
    for runtime in ("pytorch", "onnx", "onnx-int8"):
        assert read_provenance(model_dir / runtime)["load"]["peak_rss_bytes"] > 0
        fidelity = json.loads((model_dir / runtime / "fidelity.json").read_text())
        assert fidelity["passed"] and fidelity["n_payloads"] == 200
        bench = pd.read_csv(model_dir / runtime / "inprocess_bench.csv")
        payload_order = bench[bench["order"] == "payload"]
        assert sorted(payload_order["batch_size"]) == [1, 8] and set(bench["threads"]) == {1}
        # the ceiling's other strategy: whole passes over length-sorted texts in batches of 4
        assert bench[bench["order"] == "sorted"]["batch_size"].tolist() == [4]
    summary = json.loads((results_dir / "data" / "payload_token_lengths_summary.json").read_text())
    assert summary["n_texts"] == 200 and summary["model_name"] == "synthetic-roberta-2l-64h"
