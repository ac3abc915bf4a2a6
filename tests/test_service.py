"""The sentiment service: its pure logic, the Bento build, and both variants served for real."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from bento_testbed import (
    client_cpus,
    post_json,
    run_concurrent_client,
    sample_texts,
    tiny_testbed,
)

from servebench import bento
from servebench.config import deep_merge, load_config, load_yaml
from servebench.model.runtime import load_runtime

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "services" / "sentiment"))

import sentiment_inference  # noqa: E402

UNICODE_TEXTS = [
    "I love it 😀🎉👍🏽",
    "שלום, זה היה נהדר",  # Hebrew (RTL)
    "مرحبا، الخدمة كانت سيئة",  # Arabic (RTL)
    "cafe\u0301 nai\u0308ve Z\u0351\u0354a\u0352l\u0353g\u0358o",  # combining marks
    "日本語のテキストです",
    "mixed עברית and English 🙂",
]


# ----------------------------------------------------------------------------- pure logic


@pytest.mark.parametrize(
    "text, problem",
    [
        ("", "empty"),
        ("   \n\t ", "whitespace"),
        ("x" * 11, "more than the limit of 10"),
        ("ok \ud800", "lone surrogate"),
    ],
)
def test_check_text_names_the_problem(text, problem):
    with pytest.raises(ValueError, match=problem):
        sentiment_inference.check_text(text, max_text_chars=10)


@pytest.mark.parametrize("text", ["fine", "x" * 10, "ok 😀🎉", "e\u0301 שלום"])
def test_check_text_accepts_valid_text(text):
    assert sentiment_inference.check_text(text, max_text_chars=10) == text


class _FakeClassifier:
    """Counts calls and the padded length of each, like a runtime that pads to the longest."""

    labels = ["negative", "positive"]

    def __init__(self) -> None:
        self.padded_tokens = 0
        self.calls: list[list[str]] = []

    def encode(self, texts):
        lengths = [len(text.split()) for text in texts]
        mask = np.zeros((len(texts), max(lengths)), dtype=np.int64)
        for row, length in enumerate(lengths):
            mask[row, :length] = 1
        return mask, mask

    def predict_proba(self, texts):
        self.calls.append(list(texts))
        self.padded_tokens += len(texts) * max(len(text.split()) for text in texts)
        positive = np.array([len(text.split()) / 100 for text in texts])
        return np.stack([1 - positive, positive], axis=1)


def test_sorted_sub_batches_keep_the_order_and_cut_padding():
    texts = [" ".join(["w"] * n) for n in (40, 1, 30, 2, 35, 3, 1, 38)]
    plain, sorted_ = _FakeClassifier(), _FakeClassifier()
    expected = plain.predict_proba(texts)
    got = sentiment_inference.predict_proba_sorted(sorted_, texts, sub_batch_size=2)
    np.testing.assert_array_equal(got, expected)
    assert [len(call) for call in sorted_.calls] == [2, 2, 2, 2]
    assert sorted_.padded_tokens < plain.padded_tokens / 2


def test_sub_batch_size_zero_or_small_batch_runs_one_padded_batch():
    texts = ["a b", "c", "d e f"]
    for size in (0, 3, 8):
        classifier = _FakeClassifier()
        sentiment_inference.predict_proba_sorted(classifier, texts, size)
        assert classifier.calls == [texts]


def test_to_predictions_follows_the_http_contract():
    predictions = sentiment_inference.to_predictions(
        ["negative", "positive"], np.array([[0.2, 0.8], [0.9, 0.1]])
    )
    assert predictions[0] == {
        "label": "positive",
        "score": 0.8,
        "scores": {"negative": 0.2, "positive": 0.8},
    }
    assert predictions[1]["label"] == "negative"


def test_json_body_middleware_forces_json_on_api_routes_only():
    seen = []

    async def app(scope, receive, send):
        seen.append(dict(scope["headers"]))

    middleware = sentiment_inference.JsonBodyMiddleware(app)
    headers = [(b"content-type", b"multipart/form-data; boundary=x"), (b"host", b"h")]
    asyncio.run(middleware({"type": "http", "path": "/classify", "headers": headers}, None, None))
    asyncio.run(middleware({"type": "http", "path": "/metrics", "headers": headers}, None, None))
    assert seen[0][b"content-type"] == b"application/json" and seen[0][b"host"] == b"h"
    assert seen[1][b"content-type"].startswith(b"multipart/")


# ------------------------------------------------------------------------- build settings


def test_variant_settings_fill_defaults_and_reject_unknown_variants():
    config = load_config()
    settings = bento.variant_settings(config, "ablation-runtime")
    assert settings["runtime"] == "onnx-int8"
    assert settings["batching"] == {"enabled": False, "max_batch_size": 32, "max_latency_ms": 2000}
    assert settings["max_concurrency"] == 256 and settings["timeout_s"] == 60
    with pytest.raises(KeyError, match="no variant named 'nope'"):
        bento.variant_settings(config, "nope")


def test_config_defines_baseline_optimized_and_one_ablation_per_level():
    variants = load_yaml(REPO_ROOT / "config" / "config.yaml")["variants"]
    baseline, optimized = variants["baseline"], variants["optimized"]
    assert baseline["runtime"] == "pytorch" and not baseline["batching"]["enabled"]
    assert baseline["workers"] == 1 and baseline["threads_per_worker"] == 0
    assert optimized["runtime"] == "onnx-int8" and optimized["batching"]["enabled"]
    assert optimized["gc_freeze"] and optimized["sub_batch_size"] > 0
    levels = {"ablation-runtime", "ablation-service", "ablation-deployment"}
    assert levels <= set(variants)
    # Each ablation differs from the baseline in its own level's keys only.
    own_keys = {
        "ablation-runtime": {"runtime"},
        "ablation-service": {"batching", "sub_batch_size", "gc_freeze"},
        "ablation-deployment": {"workers", "threads_per_worker"},
    }
    config = load_config()
    base = bento.variant_settings(config, "baseline")
    for name, keys in own_keys.items():
        settings = bento.variant_settings(config, name)
        differing = {key for key in settings if settings[key] != base[key]}
        assert differing and differing <= keys, (name, differing)


def test_staged_build_context_carries_spec_code_and_per_runtime_requirements(tmp_path):
    config = deep_merge(load_config(), {"service": {"max_text_chars": 77}})
    for variant, torch_expected in (("baseline", True), ("optimized", False)):
        spec = bento.variant_spec(config, variant, "m-x:0123")
        context = bento.stage_build_context(spec, tmp_path / variant)
        names = {path.name for path in context.iterdir()}
        assert {"service.py", "sentiment_inference.py", "servebench_runtime.py"} <= names
        written = json.loads((context / "variant.json").read_text())
        assert written["limits"]["max_text_chars"] == 77 and written["model_tag"] == "m-x:0123"
        requirements = (context / "requirements.txt").read_text()
        assert ("torch==" in requirements) is torch_expected
        assert "onnxruntime==" in requirements or torch_expected
        bentofile = (context / "bentofile.yaml").read_text()
        assert "lock_packages: false" in bentofile and f"sentiment-{variant}" in bentofile


def test_every_runtime_has_bento_requirements():
    schema_runtimes = load_yaml(REPO_ROOT / "config" / "schema.yaml")["$defs"]["variant"][
        "properties"
    ]["runtime"]["enum"]
    for runtime in schema_runtimes:
        assert bento.requirements_file(runtime).is_file()


# ----------------------------------------------------------------------- served, end to end


@pytest.fixture(scope="module")
def testbed(tmp_path_factory):
    return tiny_testbed(tmp_path_factory)


@pytest.fixture(scope="module", params=["baseline", "optimized"])
def served(request, testbed, tmp_path_factory):
    from servebench.deploy.local import local_server

    variant = request.param
    record = testbed.records[variant]
    log = tmp_path_factory.mktemp(f"serve-{variant}") / "server.log"
    with local_server(
        record["tag"],
        bentoml_home=record["bentoml_home"],
        log_path=log,
        cpus=testbed.config["cpus"]["server"],
        ready_timeout_s=120,
    ) as server:
        yield variant, server


@pytest.mark.e2e
def test_bentos_are_built_reproducibly_with_their_settings(testbed):
    for variant, record in testbed.records.items():
        assert record["tag"].startswith(f"sentiment-{variant}:")
        assert Path(record["bento_path"], "src", "variant.json").is_file()
        assert record["settings"]["runtime"] == testbed.config["variants"][variant]["runtime"]
        assert record["model_size_bytes"] > 0 and record["bento_size_bytes"] > 0
        assert record["model_provenance"]["runtime"] == record["settings"]["runtime"]
    # The same inputs give the same tag, and the existing Bento is reused.
    again = bento.build_bento(
        testbed.config,
        "optimized",
        testbed.runtime_dir("optimized"),
        testbed.record_paths["optimized"].with_name("again.json"),
        bentoml_home=testbed.bentoml_home,
    )
    assert again["tag"] == testbed.records["optimized"]["tag"]
    assert again["reused_existing_bento"] is True


@pytest.mark.e2e
def test_answers_equal_the_in_process_model(served, testbed):
    variant, server = served
    spec = testbed.records[variant]["settings"]
    threads = spec["threads_per_worker"] or None
    classifier = load_runtime(testbed.runtime_dir(variant), threads=threads)
    texts = sample_texts(12, seed=5) + UNICODE_TEXTS
    for text in texts[:3] + UNICODE_TEXTS:
        status, answer = post_json(server.url + "/classify", {"text": text})
        assert status == 200, answer
        expected = classifier.classify([text])[0]
        assert answer["label"] == expected["label"], text
        assert answer["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    status, answers = post_json(server.url + "/classify_batch", {"texts": texts})
    assert status == 200, answers
    expected_proba = sentiment_inference.predict_proba_sorted(
        classifier, texts, spec["sub_batch_size"]
    )
    expected = sentiment_inference.to_predictions(classifier.labels, expected_proba)
    assert [a["label"] for a in answers] == [e["label"] for e in expected]
    for answer, one in zip(answers, expected, strict=True):
        assert answer["scores"] == pytest.approx(one["scores"], abs=1e-6)
        assert answer["score"] == pytest.approx(max(one["scores"].values()), abs=1e-6)
    if spec["runtime"] in ("pytorch", "onnx"):
        # fp32: the answer to a text does not depend on the texts batched with it. (Dynamic
        # int8 quantizes activations with one scale per batch, so there it does; on the tiny
        # random model by up to tenths of a probability.)
        one_by_one = [classifier.classify([text])[0] for text in texts]
        for answer, one in zip(answers, one_by_one, strict=True):
            assert answer["scores"] == pytest.approx(one["scores"], abs=1e-4)


def _bad_requests(limits):
    too_long = "x" * (limits["max_text_chars"] + 1)
    too_many = ["ok"] * (limits["max_batch_texts"] + 1)
    return [
        ("/classify", b'{"text": ', "json_invalid"),
        ("/classify", b"hello", "json_invalid"),
        ("/classify", b"", "text"),
        ("/classify", b'["a"]', "object"),
        ("/classify", b'"a"', "object"),
        ("/classify", b"null", "object"),
        ("/classify", b"{}", "text"),
        ("/classify", b'{"txt": "a"}', "text"),
        ("/classify", b'{"text": 5}', "string"),
        ("/classify", b'{"text": null}', "string"),
        ("/classify", b'{"text": ["a"]}', "string"),
        ("/classify", b'{"text": {"a": 1}}', "string"),
        ("/classify", b'{"text": true}', "string"),
        ("/classify", b'{"text": 1.5}', "string"),
        ("/classify", b'{"text": ""}', "empty"),
        ("/classify", b'{"text": "  \\n\\t "}', "whitespace"),
        ("/classify", json.dumps({"text": too_long}).encode(), "limit"),
        ("/classify", b'{"text": "\xff\xfe ok"}', "unicode"),
        ("/classify", b'{"text": "\\ud800"}', "json_invalid"),
        ("/classify", b'{"text": NaN}', "string"),
        ("/classify", b'{"texts": ["ok"]}', "text"),
        ("/classify_batch", b"{}", "texts"),
        ("/classify_batch", b'{"texts": "abc"}', "array"),
        ("/classify_batch", b'{"texts": []}', "at least 1"),
        ("/classify_batch", b'{"texts": ["ok", 3]}', "string"),
        ("/classify_batch", b'{"texts": ["ok", null]}', "string"),
        ("/classify_batch", b'{"texts": ["ok", ""]}', "empty"),
        ("/classify_batch", b'{"texts": [" "]}', "whitespace"),
        ("/classify_batch", json.dumps({"texts": too_many}).encode(), "at most"),
        ("/classify_batch", json.dumps({"texts": [too_long]}).encode(), "limit"),
        ("/classify_batch", b'{"texts": [["a"]]}', "string"),
        ("/classify_batch", b'{"texts": ["\xc3\x28"]}', "unicode"),
        ("/classify_batch", b'{"texts": [', "json_invalid"),
        ("/classify_batch", b'{"text": "ok"}', "texts"),
    ]


@pytest.mark.e2e
def test_bad_input_gets_a_4xx_with_a_message_and_the_worker_keeps_serving(served, testbed):
    variant, server = served
    workers_before = sorted(p.pid for p in server.processes())
    cases = _bad_requests(testbed.records[variant]["settings"]["limits"])
    assert len({body for _, body, _ in cases}) >= 25
    for path, body, hint in cases:
        status, answer = post_json(server.url + path, body)
        assert 400 <= status < 500, (path, body[:60], status, answer)
        assert isinstance(answer, dict) and answer.get("error"), (path, body[:60], answer)
        assert hint.lower() in json.dumps(answer).lower(), (path, body[:60], hint, answer)
    # A JSON body sent with another Content-Type is still read as JSON.
    for content_type in ("text/plain", "multipart/form-data", "application/x-www-form-urlencoded"):
        import urllib.request

        request = urllib.request.Request(
            server.url + "/classify",
            data=b'{"text": "fine"}',
            headers={"Content-Type": content_type},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
    status, answer = post_json(server.url + "/classify_batch", {"texts": ["a valid text"]})
    assert status == 200 and len(answer) == 1 and answer[0]["label"]
    assert sorted(p.pid for p in server.processes()) == workers_before


@pytest.mark.e2e
def test_adaptive_batching_forms_batches_under_concurrent_load(served, testbed):
    from servebench.deploy.local import http_get, parse_metrics

    variant, server = served
    statuses = run_concurrent_client(
        server.url + "/classify_batch", n=300, concurrency=32, cpus=client_cpus(server.cpus)
    )
    assert statuses == {"200": 300}
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    rows = parse_metrics(body.decode())
    batch = {
        (name, labels): value
        for name, labels, value in rows
        if name.startswith("bentoml_service_adaptive_batch_size")
        and "method_name=classify_batch" in labels
    }
    count = sum(v for (name, _), v in batch.items() if name.endswith("_count"))
    total_size = sum(v for (name, _), v in batch.items() if name.endswith("_sum"))
    single = sum(
        v for (name, labels), v in batch.items() if name.endswith("_bucket") and "le=1.0" in labels
    )
    if not testbed.records[variant]["settings"]["batching"]["enabled"]:
        assert count == 0, "the baseline must not go through the adaptive batcher"
        return
    assert count >= 1
    assert single < count, "no batch larger than one request was formed"
    assert total_size / count > 1.0
