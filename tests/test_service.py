"""The sentiment service: its pure logic, the Bento build, and both variants served for real."""

from __future__ import annotations

import asyncio
import contextlib
import json
import select
import socket
import sys
import threading
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
from bento_testbed import (
    client_cpus,
    post_json,
    run_concurrent_client,
    sample_texts,
)

from servebench import bento
from servebench.config import deep_merge, load_config, load_yaml
from servebench.model.runtime import load_runtime
from servebench.settings import batching_dispatcher

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
        ("x" * 11, "over the limit max_text_chars = 10"),
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


def test_text_count_and_unknown_fields_name_the_limit_or_the_field():
    assert sentiment_inference.check_text_count(["a"] * 3, 3) == ["a"] * 3
    with pytest.raises(ValueError, match="4 items, over the limit max_batch_texts = 3"):
        sentiment_inference.check_text_count(["a"] * 4, 3)
    with pytest.raises(ValueError, match="at least 1"):
        sentiment_inference.check_text_count([], 3)
    assert sentiment_inference.check_fields({"text": "a"}, ("text",), "/x") == {"text": "a"}
    with pytest.raises(ValueError, match="unknown fields 'extra', 'b': /x takes only 'text'"):
        sentiment_inference.check_fields({"text": "a", "extra": 1, "b": 2}, ("text",), "/x")


def test_body_limit_holds_the_most_verbose_valid_body_and_little_more():
    limits = sentiment_inference.body_limits(max_text_chars=100, max_batch_texts=8)
    # Astral-plane characters escaped as surrogate pairs (json.dumps' default), pretty-printed.
    text = "😀" * 100
    largest = json.dumps({"texts": [text] * 8}, indent=2).encode()
    assert len(largest) > 8 * 100 * 12  # 12 bytes per character
    assert len(largest) <= limits["/classify_batch"].max_bytes < len(largest) + 70_000
    largest_one = json.dumps({"text": text}).encode()
    assert len(largest_one) <= limits["/classify"].max_bytes < len(largest_one) + 70_000
    assert "max_batch_texts 8 x max_text_chars 100" in limits["/classify_batch"].derivation


def test_free_memory_is_released_after_large_requests_only():
    assert not sentiment_inference.release_free_memory(["x" * 100] * 10)
    large = ["x" * 10_000] * 5
    assert sentiment_inference.release_free_memory(large) is sys.platform.startswith("linux")


def _asgi_call(middleware, path, messages, headers=()):
    """Run `middleware` on one request whose body arrives as `messages`; return what the app
    received (None if it was not called), what was sent, and how many messages were read."""
    read, sent, got = [], [], {}

    async def receive():
        read.append(1)
        if len(read) <= len(messages):
            return messages[len(read) - 1]
        return {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    async def app(scope, receive, send):
        got["body"] = await receive()

    middleware.app = app
    scope = {"type": "http", "path": path, "headers": list(headers)}
    asyncio.run(middleware(scope, receive, send))
    return got.get("body"), sent, len(read)


def _chunks(n, size, last=True):
    return [
        {"type": "http.request", "body": b"x" * size, "more_body": not (last and i == n - 1)}
        for i in range(n)
    ]


def test_request_limits_middleware_answers_413_before_reading_past_the_limit():
    limits = {"/classify": sentiment_inference.BodyLimit(1000, "how it is derived")}
    middleware = sentiment_inference.RequestLimitsMiddleware(None, limits)
    # A declared Content-Length over the limit: 413, and not one body message read.
    got, sent, read = _asgi_call(
        middleware, "/classify", _chunks(1, 10), headers=[(b"content-length", b"1001")]
    )
    assert got is None and read == 0
    assert sent[0]["status"] == 413 and (b"connection", b"close") in sent[0]["headers"]
    answer = json.loads(sent[1]["body"])
    assert answer["max_body_bytes"] == 1000
    assert "max_body_bytes = 1000 (how it is derived)" in answer["error"]
    assert "Content-Length is 1001" in answer["error"]
    # A chunked body: read until it passes the limit (the 4th of 300-byte chunks), no further.
    got, sent, read = _asgi_call(middleware, "/classify", _chunks(100, 300, last=False))
    assert got is None and read == 4 and sent[0]["status"] == 413
    # At the limit: the app gets the whole body as one message.
    got, sent, read = _asgi_call(middleware, "/classify", _chunks(4, 250))
    assert got == {"type": "http.request", "body": b"x" * 1000, "more_body": False}
    assert sent == []
    # Other routes pass untouched.
    got, sent, read = _asgi_call(middleware, "/metrics", _chunks(100, 300))
    assert got == _chunks(100, 300)[0] and read == 1


def test_passes_hold_at_most_the_token_and_count_limits():
    rng = np.random.default_rng(3)
    for _ in range(200):
        lengths = rng.integers(1, 513, size=int(rng.integers(1, 80)))
        size, budget = int(rng.choice([0, 1, 4, 16])), int(rng.choice([0, 512, 2048]))
        passes = sentiment_inference.plan_passes(lengths, size, budget)
        assert sorted(np.concatenate(passes).tolist()) == list(range(len(lengths)))
        for indices in passes:
            assert size <= 0 or len(indices) <= size
            padded = len(indices) * lengths[indices].max()
            assert budget <= 0 or padded <= budget or len(indices) == 1
    # The largest valid request: 64 texts truncated to 512 tokens, 4 x 512 tokens per pass.
    passes = sentiment_inference.plan_passes(np.full(64, 512), 0, 2048)
    assert [len(indices) for indices in passes] == [4] * 16


def test_token_limits_are_configured_or_derived_from_max_length():
    # null (the schema's default): derived from the model's max_length
    assert sentiment_inference.request_token_limit(512, 64) == 16 * 512
    assert sentiment_inference.request_token_limit(512, 8) == 8 * 512  # at most the texts
    assert sentiment_inference.pass_token_limit(512) == 4 * 512
    # service.max_request_tokens, service.max_pass_tokens: as configured
    assert sentiment_inference.request_token_limit(512, 64, 3000) == 3000
    assert sentiment_inference.pass_token_limit(512, 700) == 700
    runtime = _FakeRuntime(max_length=50)
    with pytest.raises(ValueError, match="150 tokens .* over the limit max_request_tokens = 120"):
        sentiment_inference.check_request_tokens(runtime, ["w " * 60] * 3, 120)


def test_the_token_limits_of_the_config_reach_the_variant_spec(tmp_path):
    default = bento.variant_spec(load_config(), "optimized", "m-x:0123")["limits"]
    assert default["max_request_tokens"] is None and default["max_pass_tokens"] is None
    limits = {"max_request_tokens": 3000, "max_pass_tokens": 700}
    config = deep_merge(load_config(), {"service": limits})
    spec = bento.variant_spec(config, "optimized", "m-x:0123")
    context = bento.stage_build_context(spec, tmp_path / "optimized")
    written = json.loads((context / "variant.json").read_text())["limits"]
    assert {key: written[key] for key in limits} == limits


class _FakeRuntime(_FakeClassifier):
    """A fake with the runtime's truncation at `max_length` tokens and a clock that each
    forward pass advances by one second per text."""

    def __init__(self, max_length):
        super().__init__()
        self.max_length = max_length
        self.now_s = 0.0

    def _truncate(self, texts):
        return [" ".join(text.split()[: self.max_length]) for text in texts]

    def encode(self, texts):
        return super().encode(self._truncate(texts))

    def predict_proba(self, texts):
        self.now_s += len(texts)
        return super().predict_proba(self._truncate(texts))


def test_the_largest_request_runs_in_bounded_passes_even_without_sub_batches():
    runtime = _FakeRuntime(max_length=50)
    texts = [" ".join(["w"] * (100 + i)) for i in range(64)]  # all truncated to 50 tokens
    expected = _FakeRuntime(max_length=50).predict_proba(texts)
    got = sentiment_inference.predict_proba_sorted(runtime, texts, 0, max_pass_tokens=4 * 50)
    np.testing.assert_array_equal(got, expected)
    assert [len(call) for call in runtime.calls] == [4] * 16
    assert max(len(call) * 50 for call in runtime.calls) <= 200
    # A batch within both limits still runs as it comes, one padded batch.
    short = _FakeRuntime(max_length=50)
    texts = ["a b c", "d", "e f"] * 10
    sentiment_inference.predict_proba_sorted(short, texts, 0, max_pass_tokens=200)
    assert short.calls == [texts]


def test_inference_stops_at_the_first_pass_after_the_deadline():
    runtime = _FakeRuntime(max_length=50)
    texts = [" ".join(["w"] * 50)] * 64
    with pytest.raises(sentiment_inference.DeadlineExceeded, match="12 of 64 texts done"):
        sentiment_inference.predict_proba_sorted(
            runtime, texts, 0, 200, deadline_s=10.0, clock=lambda: runtime.now_s
        )
    # Passes of 4 texts (4 s each): at 8 s before the deadline, at 12 s past it.
    assert len(runtime.calls) == 3 and runtime.now_s == 12.0
    # A request whose deadline passed while it waited does no work at all.
    late = _FakeRuntime(max_length=50)
    with pytest.raises(sentiment_inference.DeadlineExceeded, match="0 of 1 texts"):
        sentiment_inference.predict_proba_sorted(late, ["a"], 0, 200, 1.0, clock=lambda: 2.0)
    assert late.calls == []


class _HeldPredict:
    """`predict` of a GreedyBatcher that records each batch; the first one runs until
    `release` is set, so that the test can queue requests behind it."""

    def __init__(self, fail_on: str = ""):
        self.batches: list[list[str]] = []
        self.release = threading.Event()
        self.fail_on = fail_on

    def __call__(self, texts: list[str], started_s: float, on_answers=None) -> list[str]:
        self.batches.append(list(texts))
        if len(self.batches) == 1:
            assert self.release.wait(10)
        if self.fail_on in texts:
            raise ValueError(f"cannot classify {self.fail_on!r}")
        return [f"answer:{text}" for text in texts]


async def _queue_behind(batcher, predict, first, queued):
    """Submit `first`, let its batch start (`predict` holds it), queue `queued` behind it, then
    release it: the answers to `first` and to each of `queued`."""
    head = asyncio.create_task(batcher.submit(first))
    await asyncio.sleep(0.05)  # the first batch is running
    rest = [asyncio.create_task(batcher.submit(texts)) for texts in queued]
    await asyncio.sleep(0.05)
    predict.release.set()
    return await head, await asyncio.gather(*rest)


def test_the_greedy_batcher_runs_a_lone_request_alone_and_a_queue_in_whole_requests():
    predict = _HeldPredict()

    async def main():
        batcher = sentiment_inference.GreedyBatcher(predict, max_batch_texts=5)
        return await _queue_behind(batcher, predict, ["a"], [[f"b{i}", f"c{i}"] for i in range(3)])

    first, rest = asyncio.run(main())
    # Nothing waited for a batch to fill; the queue ran as one batch of whole requests within
    # 5 texts, then the rest; each request got its own answers back, in order.
    assert predict.batches == [["a"], ["b0", "c0", "b1", "c1"], ["b2", "c2"]]
    assert first == ["answer:a"]
    assert rest == [[f"answer:b{i}", f"answer:c{i}"] for i in range(3)]


def test_the_greedy_batcher_runs_requests_alone_until_enough_texts_wait():
    predict = _HeldPredict()

    async def main():
        batcher = sentiment_inference.GreedyBatcher(predict, max_batch_texts=64, min_batch_texts=4)
        await _queue_behind(batcher, predict, ["a"], [[f"b{i}"] for i in range(3)])
        held = _HeldPredict()
        batcher.predict = held
        await _queue_behind(batcher, held, ["c"], [[f"d{i}"] for i in range(4)])
        return held.batches

    deep = asyncio.run(main())
    # 3 texts waiting (fewer than 4): one request at a time, in arrival order.
    assert predict.batches == [["a"], ["b0"], ["b1"], ["b2"]]
    # 4 waiting: one batch.
    assert deep == [["c"], ["d0", "d1", "d2", "d3"]]


def test_the_greedy_batcher_answers_a_request_once_its_texts_are_done_not_the_whole_batch():
    """A request whose texts a sub-batch has answered gets its answer then, while the rest of
    the batch still runs; one split across parts gets it when its last text is in."""
    release = threading.Event()
    batches = []

    def predict(texts, started_s, on_answers):
        batches.append(list(texts))
        if len(batches) > 1:
            on_answers([0, 1], [f"answer:{texts[0]}", f"answer:{texts[1]}"])  # b, c0
            assert release.wait(10)  # the rest of the batch is still running
            on_answers([2], [f"answer:{texts[2]}"])  # c1
        return [f"answer:{text}" for text in texts]

    async def main():
        batcher = sentiment_inference.GreedyBatcher(predict, max_batch_texts=64)
        first = await batcher.submit(["a"])
        whole = asyncio.create_task(batcher.submit(["b"]))
        split = asyncio.create_task(batcher.submit(["c0", "c1"]))
        unanswered = asyncio.create_task(batcher.submit(["d"]))
        early = await asyncio.wait_for(asyncio.shield(whole), 5)
        await asyncio.sleep(0.05)
        pending = [task.done() for task in (split, unanswered)]
        release.set()
        return first, early, pending, await split, await unanswered

    first, early, pending, split, unanswered = asyncio.run(main())
    assert batches == [["a"], ["b", "c0", "c1", "d"]]
    assert first == ["answer:a"]
    assert early == ["answer:b"]  # before the batch ended
    assert pending == [False, False]  # c1 and d were still running
    assert split == ["answer:c0", "answer:c1"]
    assert unanswered == ["answer:d"]  # from predict's return value


def test_sorted_sub_batches_are_reported_as_each_one_runs():
    classifier = _FakeClassifier()
    texts = ["c c c", "a", "b b", "d d d d"]
    parts = []
    got = sentiment_inference.predict_proba_sorted(
        classifier, texts, 2, on_pass=lambda indices, rows: parts.append((list(indices), rows))
    )
    assert [indices for indices, _ in parts] == [[1, 2], [0, 3]]  # shortest first
    for indices, rows in parts:
        np.testing.assert_array_equal(rows, got[indices])
    single = []
    sentiment_inference.predict_proba_sorted(
        classifier, ["a"], 2, on_pass=lambda indices, rows: single.append(list(indices))
    )
    assert single == [[0]]


def test_the_greedy_batcher_leaves_out_cancelled_requests_and_fails_a_batch_together():
    predict = _HeldPredict(fail_on="bad")

    async def main():
        batcher = sentiment_inference.GreedyBatcher(predict, max_batch_texts=64)
        first = asyncio.create_task(batcher.submit(["a"]))
        await asyncio.sleep(0.05)
        kept = asyncio.create_task(batcher.submit(["x"]))
        cancelled = asyncio.create_task(batcher.submit(["y"]))
        failing = asyncio.create_task(batcher.submit(["bad"]))
        await asyncio.sleep(0.05)
        cancelled.cancel()  # as BentoML's timeout does
        await asyncio.sleep(0.01)
        predict.release.set()
        results = await asyncio.gather(first, kept, failing, return_exceptions=True)
        return results, await batcher.submit(["z"])  # the batcher still serves

    (first, kept, failing), after = asyncio.run(main())
    assert predict.batches == [["a"], ["x", "bad"], ["z"]]
    assert first == ["answer:a"] and after == ["answer:z"]
    assert isinstance(kept, ValueError) and isinstance(failing, ValueError)


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
    assert settings["batching"] == {
        "enabled": False,
        "dispatcher": "adaptive",
        "max_batch_size": 32,
        "min_batch_size": 16,
        "max_latency_ms": 2000,
    }
    assert settings["max_concurrency"] == 256 and settings["timeout_s"] == 60
    with pytest.raises(KeyError, match="no variant named 'nope'"):
        bento.variant_settings(config, "nope")


def test_config_defines_baseline_optimized_and_one_ablation_per_level():
    # The schema's defaults filled in: config.yaml sets only what a variant changes.
    variants = load_config()["variants"]
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
        "ablation-service": {"batching", "sub_batch_size", "gc_freeze", "request_telemetry"},
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
    # The testbed's configured token limits (not the derived ones) are the service's.
    limits = spec["limits"]
    assert limits["max_pass_tokens"] != 4 * classifier.max_length
    assert (
        f"{limits['max_request_tokens']} per request, {limits['max_pass_tokens']} padded tokens "
        "per forward pass" in server.log_path.read_text()
    )
    texts = sample_texts(12, seed=5) + UNICODE_TEXTS
    for text in texts[:3] + UNICODE_TEXTS:
        status, answer = post_json(server.url + "/classify", {"text": text})
        assert status == 200, answer
        expected = classifier.classify([text])[0]
        assert answer["label"] == expected["label"], text
        assert answer["scores"] == pytest.approx(expected["scores"], abs=1e-6)
    status, answers = post_json(server.url + "/classify_batch", {"texts": texts})
    assert status == 200, answers
    # The list response's media type is named in service.py (BentoML would otherwise derive
    # it from the JSON schema of every response): JSON, as documented.
    with urllib.request.urlopen(server.url + "/docs.json", timeout=30) as response:
        openapi = json.loads(response.read())
    assert list(openapi["paths"]["/classify_batch"]["post"]["responses"]["200"]["content"]) == [
        "application/json"
    ]
    expected_proba = sentiment_inference.predict_proba_sorted(
        classifier,
        texts,
        spec["sub_batch_size"],
        sentiment_inference.pass_token_limit(
            classifier.max_length, spec["limits"]["max_pass_tokens"]
        ),
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
        ("/classify", json.dumps({"text": too_long}).encode(), "max_text_chars"),
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
        ("/classify_batch", json.dumps({"texts": too_many}).encode(), "max_batch_texts"),
        ("/classify_batch", json.dumps({"texts": [too_long]}).encode(), "max_text_chars"),
        ("/classify_batch", b'{"texts": [["a"]]}', "string"),
        ("/classify_batch", b'{"texts": ["\xc3\x28"]}', "unicode"),
        ("/classify_batch", b'{"texts": [', "json_invalid"),
        ("/classify_batch", b'{"text": "ok"}', "texts"),
        # Unknown fields are refused, by name.
        ("/classify", b'{"text": "fine", "extra": 1}', "unknown field 'extra'"),
        ("/classify", b'{"text": "fine", "texts": ["a"]}', "unknown field 'texts'"),
        ("/classify_batch", b'{"texts": ["fine"], "extra": 1}', "unknown field 'extra'"),
        (
            "/classify_batch",
            b'{"texts": ["ok"], "text": "a", "b": 2}',
            "unknown fields 'text', 'b'",
        ),
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


BATCH_SIZE_HISTOGRAMS = {
    "adaptive": "bentoml_service_adaptive_batch_size",
    "greedy": "servebench_greedy_batch_size",
}


def batch_sizes_under_concurrent_load(server) -> dict[str, tuple[float, float, float]]:
    """300 concurrent requests of one text; then, per batcher, its histogram's (batches,
    texts, batches of one text) from /metrics."""
    from servebench.deploy.monitor import parse_metrics
    from servebench.net import http_get

    statuses = run_concurrent_client(
        server.url + "/classify_batch", n=300, concurrency=32, cpus=client_cpus(server.cpus)
    )
    assert statuses == {"200": 300}
    status, body = http_get(server.url + "/metrics")
    assert status == 200
    rows = parse_metrics(body.decode())
    found = {}
    for dispatcher, histogram in BATCH_SIZE_HISTOGRAMS.items():
        samples = [
            (name, labels, value) for name, labels, value in rows if name.startswith(histogram)
        ]
        found[dispatcher] = (
            sum(v for name, _, v in samples if name.endswith("_count")),
            sum(v for name, _, v in samples if name.endswith("_sum")),
            sum(
                v for name, labels, v in samples if name.endswith("_bucket") and "le=1.0" in labels
            ),
        )
    return found


@pytest.mark.e2e
def test_batching_forms_batches_under_concurrent_load(served, testbed):
    variant, server = served
    found = batch_sizes_under_concurrent_load(server)
    dispatcher = batching_dispatcher(testbed.records[variant]["settings"]["batching"])
    for other, (count, _, _) in found.items():
        if other != dispatcher:
            assert count == 0, f"{variant} ({dispatcher}) must not go through the {other} batcher"
    if dispatcher == "off":
        return
    count, texts, single = found[dispatcher]
    assert texts >= 300  # the module's earlier tests sent requests to this server too
    assert single < count, "no batch larger than one request was formed"


@contextlib.contextmanager
def served_optimized_with(testbed, out_dir: Path, **changes):
    """The optimized Bento served with `changes` over its spec, given at start as the tuning
    serves a configuration; its log is out_dir/server.log."""
    from servebench.deploy.local import local_server
    from servebench.jobs.tune import SPEC_ENV

    record = testbed.records["optimized"]
    spec = json.loads(Path(record["bento_path"], "src", "variant.json").read_text())
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "variant.json").write_text(json.dumps({**spec, **changes}))
    with local_server(
        record["tag"],
        bentoml_home=record["bentoml_home"],
        log_path=out_dir / "server.log",
        cpus=testbed.config["cpus"]["server"],
        ready_timeout_s=120,
        extra_env={SPEC_ENV: str(out_dir / "variant.json")},
    ) as server:
        yield server


@pytest.mark.e2e
def test_bentomls_adaptive_batcher_forms_batches_under_concurrent_load(testbed, tmp_path):
    """The optimized Bento served with BentoML's batcher instead."""
    batching = testbed.records["optimized"]["settings"]["batching"]
    adaptive = {**batching, "enabled": True, "dispatcher": "adaptive"}
    with served_optimized_with(testbed, tmp_path, batching=adaptive) as server:
        found = batch_sizes_under_concurrent_load(server)
    count, texts, single = found["adaptive"]
    assert found["greedy"][0] == 0 and count >= 1
    assert single < count, "no batch larger than one request was formed"
    assert texts / count > 1.0


@pytest.mark.e2e
def test_request_telemetry_off_drops_the_access_log_but_keeps_the_metrics(testbed, tmp_path):
    """The optimized Bento served with request_telemetry on and off: off, the server's log has
    no access line for an API request, while /metrics counts every request alike."""
    from servebench.deploy.monitor import parse_metrics
    from servebench.net import http_get

    n_requests = 12
    found = {}
    for telemetry in (True, False):
        out_dir = tmp_path / f"telemetry-{telemetry}"
        with served_optimized_with(testbed, out_dir, request_telemetry=telemetry) as server:
            for text in sample_texts(n_requests, seed=5):
                status, _ = post_json(server.url + "/classify", {"text": text})
                assert status == 200
            status, body = http_get(server.url + "/metrics")
            assert status == 200
        counted = sum(
            value
            for name, labels, value in parse_metrics(body.decode())
            if name.endswith("request_total") and "endpoint=/classify;" in labels
        )
        access_lines = (out_dir / "server.log").read_text().count("path=/classify,")
        found[telemetry] = (counted, access_lines)
    assert found[True] == (n_requests, n_requests), found
    assert found[False] == (n_requests, 0), found


def _post_raw(url, path, *, chunked, total_bytes, chunk_bytes=64 * 1024, timeout_s=10.0):
    """POST a body of `total_bytes` (declared in Content-Length, or sent chunked) over a raw
    socket, and stop sending as soon as the server answers. Returns (status, JSON answer,
    seconds from the end of the headers to the answer, body bytes sent)."""
    parts = urlsplit(url)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {total_bytes}"
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Content-Type: application/json\r\n{framing}\r\n\r\n"
    )
    piece = b"x" * chunk_bytes
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout_s) as sock:
        sock.sendall(head.encode())
        started = time.monotonic()
        sent = 0
        while sent < total_bytes and not select.select([sock], [], [], 0)[0]:
            data = b'{"texts": ["' + piece[12:] if sent == 0 else piece
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            except OSError:  # the server answered and closed the connection
                break
            sent += len(data)
        raw = b""
        try:
            while True:
                received = sock.recv(65536)
                if not received:
                    break
                raw += received
                head_end = raw.find(b"\r\n\r\n")
                if head_end >= 0:
                    headers = raw[:head_end].decode("latin-1").lower()
                    length = int(headers.split("content-length:")[1].split()[0])
                    if len(raw) >= head_end + 4 + length:
                        break
        except ConnectionResetError:
            pass  # after the answer: the server does not read the rest of the body
        elapsed_s = time.monotonic() - started
    status = int(raw.split(b" ", 2)[1]) if raw else 0
    body = raw.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in raw else b""
    return status, json.loads(body) if body else None, elapsed_s, sent


def _memory(server):
    """Worker PIDs and the RSS of all the server's processes together."""
    processes = server.processes()
    return sorted(p.pid for p in processes), sum(p.memory_info().rss for p in processes)


@pytest.mark.e2e
def test_oversized_bodies_get_413_before_they_are_read(served, testbed):
    variant, server = served
    limits = testbed.records[variant]["settings"]["limits"]
    body_limits = sentiment_inference.body_limits(
        limits["max_text_chars"], limits["max_batch_texts"]
    )
    status, _ = post_json(server.url + "/classify_batch", {"texts": ["warm up"]})
    assert status == 200
    pids_before, rss_before = _memory(server)
    oversized = 64 * 1024 * 1024
    for path, chunked, repeat in [
        ("/classify_batch", False, 3),
        ("/classify_batch", True, 3),
        ("/classify", False, 1),
        ("/classify", True, 1),
    ]:
        limit = body_limits[path].max_bytes
        for _ in range(repeat):
            status, answer, elapsed_s, sent = _post_raw(
                server.url, path, chunked=chunked, total_bytes=oversized
            )
            what = (variant, path, "chunked" if chunked else "content-length")
            assert status == 413, (what, status, answer)
            assert f"max_body_bytes = {limit}" in answer["error"], (what, answer)
            assert answer["max_body_bytes"] == limit
            assert elapsed_s < 1.0, (what, elapsed_s)
            # Answered long before the body was sent (what was sent includes what the
            # sockets' kernel buffers took in meanwhile, a few MB on loopback).
            assert sent < oversized / 4, (what, sent)
    pids_after, rss_after = _memory(server)
    assert pids_after == pids_before
    # The server never held more than one route limit (7.7 MB) of the 64 MB bodies at a time.
    assert rss_after - rss_before < 16 * 1024 * 1024, (rss_before, rss_after)
    status, answer = post_json(server.url + "/classify_batch", {"texts": ["still serving"]})
    assert status == 200 and len(answer) == 1


@pytest.mark.e2e
def test_the_soaks_bad_requests_each_get_a_4xx(served, testbed):
    from servebench.bench import soak

    variant, server = served
    record = testbed.records[variant]
    limits = record["settings"]["limits"]
    kinds = soak.bad_requests(limits, int(record["model_provenance"]["max_length"]))
    max_body = sentiment_inference.body_limits(limits["max_text_chars"], limits["max_batch_texts"])
    address = urlsplit(server.url)
    statuses = {
        request.kind: soak.send_bad(
            address.hostname, address.port, request, max_body["/classify_batch"].max_bytes
        )[0]
        for request in kinds
    }
    assert statuses == {
        **{request.kind: 400 for request in kinds},
        "over-content-length": 413,
        "over-chunked": 413,
    }
    assert "over-token-limit" in statuses  # the testbed's configured limit can be broken
    status, answer = post_json(server.url + "/classify_batch", {"texts": ["still serving"]})
    assert status == 200 and len(answer) == 1


@pytest.mark.e2e
def test_largest_valid_request_is_answered_and_one_text_more_is_refused(served, testbed):
    """The largest request within every limit, in its most verbose JSON: texts of
    max_text_chars astral-plane characters (12 bytes each escaped), as many as the token limit
    admits at the model's max_length. The largest body the character limits allow (7.7 MB,
    max_batch_texts of them) is within the body limit but over the token limit: a 400."""
    variant, server = served
    record = testbed.records[variant]
    limits = record["settings"]["limits"]
    max_length = int(record["model_provenance"]["max_length"])
    max_tokens = sentiment_inference.request_token_limit(
        max_length, limits["max_batch_texts"], limits["max_request_tokens"]
    )
    text = "\U0001f600" * limits["max_text_chars"]
    texts = [text] * (max_tokens // max_length)
    status, answer = post_json(server.url + "/classify_batch", {"texts": texts}, timeout_s=120)
    assert status == 200, answer
    assert len(answer) == len(texts) and all(a["label"] for a in answer)
    pids_before, rss_before = _memory(server)
    for count in (len(texts) + 1, limits["max_batch_texts"]):
        body = json.dumps({"texts": [text] * count}).encode()
        status, answer = post_json(server.url + "/classify_batch", body, timeout_s=120)
        assert status == 400, (count, status, answer)
        assert f"max_request_tokens = {max_tokens}" in json.dumps(answer), answer
    # Tokenizing them took hundreds of MB (the tokenizer keeps what truncation cuts off); it
    # went back to the OS.
    pids_after, rss_after = _memory(server)
    assert pids_after == pids_before
    assert rss_after - rss_before < 48 * 1024 * 1024, (rss_before, rss_after)
    limit = sentiment_inference.body_limits(limits["max_text_chars"], limits["max_batch_texts"])
    assert len(body) <= limit["/classify_batch"].max_bytes
