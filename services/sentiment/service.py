"""The sentiment service: one BentoML code base, configured by the variant spec in its Bento.

`servebench.bento` stages this file, `sentiment_inference.py`, a copy of
`servebench/model/runtime.py` (as `servebench_runtime.py`) and `variant.json` into a build context
and runs `bentoml build`. Everything that differs between variants (runtime, adaptive batching,
sorted sub-batches, workers, threads, gc.freeze, traffic limits, input limits) is read from
`variant.json` at import, so baseline, optimized and the ablation variants share this code.

HTTP contract (docs/service.md): POST /classify {"text": ...} -> one prediction;
POST /classify_batch {"texts": [...]} -> a list of predictions; /readyz, /livez, /metrics are
BentoML's own. Bad input gets a 400 with a JSON message; the worker keeps serving.
"""

import gc
import logging
import os
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field
from sentiment_inference import (
    JsonBodyMiddleware,
    check_text,
    die_with_parent,
    load_spec,
    predict_proba_sorted,
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

try:  # the copy frozen into the Bento at build time
    import servebench_runtime as runtime
except ModuleNotFoundError:  # running from the source tree
    from servebench.model import runtime

logger = logging.getLogger("bentoml.service.sentiment")

LIMITS = SPEC["limits"]
BATCHING = SPEC["batching"]
SUB_BATCH_SIZE = int(SPEC.get("sub_batch_size", 0))


def _valid_text(text: str) -> str:
    return check_text(text, int(LIMITS["max_text_chars"]))


# strict: a number or null is a wrong type, never coerced to a string.
Text = Annotated[str, Field(strict=True), AfterValidator(_valid_text)]
TextList = Annotated[
    list[Text], Field(strict=True, min_length=1, max_length=int(LIMITS["max_batch_texts"]))
]


class Prediction(BaseModel):
    label: str
    score: float
    scores: dict[str, float]


@bentoml.service(
    name="sentiment",
    workers=int(SPEC["workers"]),
    # One inference at a time per worker: parallelism comes from intra-op threads and workers.
    threads=1,
    traffic={"timeout": float(SPEC["timeout_s"]), "max_concurrency": int(SPEC["max_concurrency"])},
    labels={"variant": SPEC["variant"], "runtime": SPEC["runtime"]},
)
class SentimentService:
    model = bentoml.models.BentoModel(SPEC["model_tag"])

    def __init__(self) -> None:
        self.classifier = runtime.load_runtime(self.model.path, threads=THREADS or None)
        self.labels = list(self.classifier.labels)
        # Warm-up: the first call of a runtime allocates its buffers.
        self._predict(["warm-up", "a somewhat longer warm-up text for the model"])
        if SPEC.get("gc_freeze"):
            # Move everything loaded so far out of the collector's sight: a full collection
            # otherwise walks the whole model's Python objects (a ~270 ms pause here).
            gc.collect()
            gc.freeze()
        logger.info(
            "variant %s: runtime %s, threads %s, batching %s, sub-batch %s, gc.freeze %s",
            SPEC["variant"],
            SPEC["runtime"],
            THREADS or "default",
            BATCHING,
            SUB_BATCH_SIZE,
            SPEC.get("gc_freeze"),
        )

    def _predict(self, texts: list[str]) -> list[dict]:
        probabilities = predict_proba_sorted(self.classifier, texts, SUB_BATCH_SIZE)
        return to_predictions(self.labels, probabilities)

    @bentoml.api(route="/classify")
    def classify(self, text: Text) -> Prediction:
        return Prediction(**self._predict([text])[0])

    if BATCHING["enabled"]:
        # Concurrent requests (each a list of texts) are merged into one list by BentoML's
        # adaptive batcher; the answers are split back per request.
        @bentoml.api(
            route="/classify_batch",
            batchable=True,
            batch_dim=0,
            max_batch_size=int(BATCHING["max_batch_size"]),
            max_latency_ms=int(BATCHING["max_latency_ms"]),
        )
        def classify_batch(self, texts: TextList) -> list[Prediction]:
            return [Prediction(**p) for p in self._predict(texts)]

    else:

        @bentoml.api(route="/classify_batch")
        def classify_batch(self, texts: TextList) -> list[Prediction]:
            return [Prediction(**p) for p in self._predict(texts)]


SentimentService.add_asgi_middleware(JsonBodyMiddleware)
