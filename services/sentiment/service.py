"""The sentiment service: one BentoML code base, configured by the variant spec in its Bento.

`servebench.bento` stages this file, `sentiment_inference.py`, a copy of
`servebench/model/runtime.py` (as `servebench_runtime.py`) and `variant.json` into a build context
and runs `bentoml build`. Everything that differs between variants (runtime, batching: off,
BentoML's adaptive batcher or the greedy one of sentiment_inference, sorted sub-batches,
workers, threads, gc.freeze, traffic limits, input limits) is read from `variant.json` at
import, so baseline, optimized and the ablation variants share this code.

HTTP contract (docs/service.md): POST /classify {"text": ...} -> one prediction;
POST /classify_batch {"texts": [...]} -> a list of predictions; /readyz, /livez, /metrics are
BentoML's own. Bad input gets a 400 with a JSON message (an unknown field too), a body over the
route's limit a 413 before it is read; the message names the limit. The worker keeps serving.
"""

import gc
import logging
import os
import time
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from sentiment_inference import (
    REQUEST_STARTED_S,
    DeadlineExceeded,
    GreedyBatcher,
    JsonBodyMiddleware,
    OnAnswers,
    RequestLimitsMiddleware,
    body_limits,
    check_fields,
    check_request_tokens,
    check_text,
    check_text_count,
    die_with_parent,
    load_spec,
    pass_token_limit,
    predict_proba_sorted,
    release_free_memory,
    request_token_limit,
    to_predictions,
)

SPEC = load_spec(Path(__file__).resolve().parent)
# BentoML starts each worker in a session of its own: should the server's main process die
# without stopping it (SIGKILL), the kernel stops the worker instead of leaving an orphan.
die_with_parent()
THREADS = int(SPEC["threads_per_worker"])
if THREADS > 0:
    # Before the runtime (torch / onnxruntime / OpenMP) is imported by this worker.
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[name] = str(THREADS)

import bentoml  # noqa: E402
from bentoml.validators import ContentType  # noqa: E402

try:  # the copy frozen into the Bento at build time
    import servebench_runtime as runtime
except ModuleNotFoundError:  # running from the source tree
    from servebench.model import runtime

logger = logging.getLogger("bentoml.service.sentiment")

LIMITS = SPEC["limits"]
MAX_TEXT_CHARS = int(LIMITS["max_text_chars"])
MAX_BATCH_TEXTS = int(LIMITS["max_batch_texts"])
# service.max_request_tokens, service.max_pass_tokens; None (null, or a Bento built before the
# keys existed): derived from the model's max_length (sentiment_inference).
MAX_REQUEST_TOKENS = LIMITS.get("max_request_tokens")
MAX_PASS_TOKENS = LIMITS.get("max_pass_tokens")
BATCHING = SPEC["batching"]
# "adaptive": BentoML's batcher; "greedy": GreedyBatcher (a Bento built before the key existed:
# adaptive).
GREEDY = BATCHING["enabled"] and BATCHING.get("dispatcher", "adaptive") == "greedy"
SUB_BATCH_SIZE = int(SPEC.get("sub_batch_size", 0))
# A Bento built before the key existed: BentoML's default (on).
REQUEST_TELEMETRY = bool(SPEC.get("request_telemetry", True))
TIMEOUT_S = float(SPEC["timeout_s"])


def _valid_text(text: str) -> str:
    return check_text(text, MAX_TEXT_CHARS)


def _valid_count(texts: Any) -> Any:
    return check_text_count(texts, MAX_BATCH_TEXTS)


# strict: a number or null is a wrong type, never coerced to a string.
Text = Annotated[str, Field(strict=True), AfterValidator(_valid_text)]
# The count is checked before the texts are (BeforeValidator), with a message naming the limit;
# min_length / max_length stay for the OpenAPI schema.
TextList = Annotated[
    list[Text],
    Field(strict=True, min_length=1, max_length=MAX_BATCH_TEXTS),
    BeforeValidator(_valid_count),
]


class ClassifyInput(bentoml.IODescriptor):
    """{"text": ...}; any other field is refused (400), named in the message."""

    model_config = ConfigDict(extra="forbid")
    text: Text

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return check_fields(data, ("text",), "/classify")


class ClassifyBatchInput(bentoml.IODescriptor):
    """{"texts": [...]}; any other field is refused (400), named in the message, and so are
    texts over the request's token limit."""

    model_config = ConfigDict(extra="forbid")
    texts: TextList

    @model_validator(mode="before")
    @classmethod
    def _known_fields(cls, data: Any) -> Any:
        return check_fields(data, ("texts",), "/classify_batch")

    @model_validator(mode="after")
    def _within_token_limit(self) -> "ClassifyBatchInput":
        # Per request, before BentoML's batcher merges requests (a batched call cannot tell
        # them apart). Tokenizes only a request that could be over (more than
        # REQUEST_TEXTS_AT_MAX_LENGTH texts); at worst (64 x 10,000 characters) about 1 s.
        classifier = LOADED.get("classifier")
        if classifier is not None:
            limit = request_token_limit(
                int(classifier.max_length), MAX_BATCH_TEXTS, MAX_REQUEST_TOKENS
            )
            try:
                check_request_tokens(classifier, self.texts, limit)
            except ValueError:
                release_free_memory(self.texts)  # what tokenizing it left behind
                raise
        return self


# The worker's runtime, set when the service is created, for the token check of validation.
LOADED: dict[str, Any] = {}


class Prediction(BaseModel):
    label: str
    score: float
    scores: dict[str, float]


# A list's media type, named: else BentoML works it out from the list's JSON schema, built
# anew for every response (a fifth of the event loop's time at saturation, in a py-spy profile).
Predictions = Annotated[list[Prediction], ContentType("application/json")]


# request_telemetry false: no access-log line and no OpenTelemetry span (OpenTelemetry's ASGI
# middleware skips an excluded URL whole) for a request to an API route, work that BentoML does
# on the event loop, on the server's core, for each request (docs/service.md).
LEAN_REQUESTS = {
    "logging": {"access": {"enabled": False}},
    "tracing": {"excluded_urls": ["/classify", "/classify_batch"]},
}


@bentoml.service(
    name="sentiment",
    workers=int(SPEC["workers"]),
    # One inference at a time per worker: parallelism comes from intra-op threads and workers.
    threads=1,
    traffic={"timeout": float(SPEC["timeout_s"]), "max_concurrency": int(SPEC["max_concurrency"])},
    labels={"variant": SPEC["variant"], "runtime": SPEC["runtime"]},
    **({} if REQUEST_TELEMETRY else LEAN_REQUESTS),
)
class SentimentService:
    model = bentoml.models.BentoModel(SPEC["model_tag"])

    def __init__(self) -> None:
        self.classifier = runtime.load_runtime(self.model.path, threads=THREADS or None)
        self.labels = list(self.classifier.labels)
        LOADED["classifier"] = self.classifier
        # A forward pass holds at most this many padded tokens (texts x longest text): the
        # largest valid request (max_batch_texts texts truncated to max_length tokens) runs
        # in passes within it, never as one padded batch.
        self.max_pass_tokens = pass_token_limit(int(self.classifier.max_length), MAX_PASS_TOKENS)
        if GREEDY:
            self.batcher = GreedyBatcher(
                self._predict,
                max_batch_texts=int(BATCHING["max_batch_size"]),
                min_batch_texts=int(BATCHING.get("min_batch_size", 1)),
                on_batch=greedy_batch_size_histogram(),
            )
        # Warm-up: the first call of a runtime allocates its buffers.
        self._predict(["warm-up", "a somewhat longer warm-up text for the model"])
        if SPEC.get("gc_freeze"):
            # Move everything loaded so far out of the collector's sight: a full collection
            # otherwise walks the whole model's Python objects (a ~270 ms pause here).
            gc.collect()
            gc.freeze()
        logger.info(
            "variant %s: runtime %s, threads %s, batching %s, sub-batch %s, gc.freeze %s, "
            "request telemetry %s, "
            "max %d tokens per text (truncation), %d per request, %d padded tokens per "
            "forward pass, body limits %s",
            SPEC["variant"],
            SPEC["runtime"],
            THREADS or "default",
            BATCHING,
            SUB_BATCH_SIZE,
            SPEC.get("gc_freeze"),
            REQUEST_TELEMETRY,
            self.classifier.max_length,
            request_token_limit(
                int(self.classifier.max_length), MAX_BATCH_TEXTS, MAX_REQUEST_TOKENS
            ),
            self.max_pass_tokens,
            {path: limit.max_bytes for path, limit in BODY_LIMITS.items()},
        )

    def _predict(
        self,
        texts: list[str],
        started_s: float | None = None,
        on_answers: OnAnswers | None = None,
    ) -> list[dict]:
        """`started_s`: when the request arrived; inference stops (DeadlineExceeded) at the
        first forward pass that would start timeout_s after it, when BentoML has answered 504
        already, so that a timed-out request leaves at most one pass of work behind.
        `on_answers(indices, predictions)` is told each forward pass's answers as it ends."""
        deadline_s = None if started_s is None else started_s + TIMEOUT_S
        on_pass = None
        if on_answers is not None:

            def on_pass(indices: Any, probabilities: Any) -> None:
                on_answers(indices, to_predictions(self.labels, probabilities))

        try:
            probabilities = predict_proba_sorted(
                self.classifier,
                texts,
                SUB_BATCH_SIZE,
                self.max_pass_tokens,
                deadline_s,
                on_pass=on_pass,
            )
        except DeadlineExceeded as error:
            logger.warning("%d texts: %s", len(texts), error)
            raise
        finally:
            release_free_memory(texts)
        return to_predictions(self.labels, probabilities)

    if GREEDY:
        # Both routes go through the greedy batcher, whose one thread runs every inference.
        @bentoml.api(route="/classify", input_spec=ClassifyInput)
        async def classify(self, text: Text) -> Prediction:
            return Prediction(**(await self.batcher.submit([text]))[0])

        @bentoml.api(route="/classify_batch", input_spec=ClassifyBatchInput)
        async def classify_batch(self, texts: TextList) -> Predictions:
            return [Prediction(**p) for p in await self.batcher.submit(texts)]

    else:

        @bentoml.api(route="/classify", input_spec=ClassifyInput)
        def classify(self, text: Text) -> Prediction:
            return Prediction(**self._predict([text], _request_started_s())[0])

    if BATCHING["enabled"] and not GREEDY:
        # Concurrent requests (each a list of texts) are merged into one list by BentoML's
        # adaptive batcher; the answers are split back per request.
        @bentoml.api(
            route="/classify_batch",
            input_spec=ClassifyBatchInput,
            batchable=True,
            batch_dim=0,
            max_batch_size=int(BATCHING["max_batch_size"]),
            max_latency_ms=int(BATCHING["max_latency_ms"]),
        )
        def classify_batch(self, texts: TextList) -> Predictions:
            # Merged from several requests in BentoML's dispatcher, whose context is not any
            # one request's: the deadline counts from the batch's start (each of its requests
            # arrived before it, so no later deadline than theirs is ever enforced early).
            return [Prediction(**p) for p in self._predict(texts, time.monotonic())]

    elif not BATCHING["enabled"]:

        @bentoml.api(route="/classify_batch", input_spec=ClassifyBatchInput)
        def classify_batch(self, texts: TextList) -> Predictions:
            return [Prediction(**p) for p in self._predict(texts, _request_started_s())]


def greedy_batch_size_histogram() -> Any:
    """`observe` of the histogram servebench_greedy_batch_size on /metrics (texts per batch),
    as BentoML's adaptive batcher has bentoml_service_adaptive_batch_size."""
    # Imported here, in the worker: BentoML sets up Prometheus' multiprocess mode before.
    from prometheus_client import Histogram

    buckets = [2.0**power for power in range(int(BATCHING["max_batch_size"]).bit_length() + 1)]
    histogram = Histogram(
        "servebench_greedy_batch_size", "Texts per batch of the greedy batcher", buckets=buckets
    )
    return histogram.observe


def _request_started_s() -> float:
    """When the request being handled arrived (RequestLimitsMiddleware), else now."""
    started_s = REQUEST_STARTED_S.get()
    return time.monotonic() if started_s is None else started_s


BODY_LIMITS = body_limits(MAX_TEXT_CHARS, MAX_BATCH_TEXTS)
SentimentService.add_asgi_middleware(RequestLimitsMiddleware, limits=BODY_LIMITS)
SentimentService.add_asgi_middleware(JsonBodyMiddleware)
