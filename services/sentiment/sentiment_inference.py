"""Pure logic of the sentiment service: the variant spec, input checks, sorted sub-batches.

No BentoML import here, so the tests exercise this module directly. It is copied into every
Bento next to `service.py` (the Bento is self-contained: no servebench install needed).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

VARIANT_FILE = "variant.json"
# Overrides the Bento's variant.json, for running service.py from the source tree by hand.
VARIANT_ENV = "SERVEBENCH_VARIANT_SPEC"
PR_SET_PDEATHSIG = 1


def load_spec(service_dir: Path) -> dict[str, Any]:
    """The variant spec that `servebench.bento` wrote into the Bento at build time."""
    path = Path(os.environ.get(VARIANT_ENV) or service_dir / VARIANT_FILE)
    if not path.is_file():
        raise RuntimeError(
            f"{path}: no variant spec; build the Bento with servebench.bento "
            f"(or point {VARIANT_ENV} at a variant JSON)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def die_with_parent() -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux; else no-op)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def check_text(text: str, max_text_chars: int) -> str:
    """Reject what the model cannot classify meaningfully; ValueError names the problem."""
    if not text.strip():
        raise ValueError("text is empty or whitespace-only")
    if len(text) > max_text_chars:
        raise ValueError(
            f"text has {len(text)} characters, more than the limit of {max_text_chars}"
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        # A JSON "\ud800" escape decodes to a lone surrogate, which the tokenizer cannot encode.
        raise ValueError("text contains invalid Unicode (a lone surrogate code point)") from None
    return text


class JsonBodyMiddleware:
    """ASGI middleware: the body of an API request is parsed as JSON whatever its Content-Type.

    BentoML picks a parser by Content-Type, and a JSON body sent as multipart/form-data
    crashes its multipart parser (a 500). Here a body is JSON or a 400 that says why; `curl -d`
    (form-urlencoded by default) works as users expect.
    """

    def __init__(self, app: Any, paths: Sequence[str] = ("/classify", "/classify_batch")) -> None:
        self.app = app
        self.paths = frozenset(paths)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope.get("type") == "http" and scope.get("path") in self.paths:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
        await self.app(scope, receive, send)


def token_lengths(classifier: Any, texts: Sequence[str]) -> np.ndarray:
    """Number of real (non-padding) tokens of each text, after truncation."""
    _, attention_mask = classifier.encode(texts)
    return attention_mask.sum(axis=1)


def predict_proba_sorted(classifier: Any, texts: Sequence[str], sub_batch_size: int) -> np.ndarray:
    """Probabilities of `texts`, computed on sub-batches of texts of similar token length.

    A padded batch costs as if every text were as long as its longest one; on a CPU that waste
    outweighs what a large batch saves. Sorting by length and running small sub-batches keeps
    padding low. Rows come back in the order of `texts`. sub_batch_size 0 (or a batch not
    larger than it) runs the batch as one padded batch.
    """
    if sub_batch_size <= 0 or len(texts) <= sub_batch_size:
        return classifier.predict_proba(list(texts))
    order = np.argsort(token_lengths(classifier, texts), kind="stable")
    probabilities = np.empty((len(texts), len(classifier.labels)), dtype=np.float64)
    for start in range(0, len(order), sub_batch_size):
        chunk = order[start : start + sub_batch_size]
        probabilities[chunk] = classifier.predict_proba([texts[i] for i in chunk])
    return probabilities


def to_predictions(labels: Sequence[str], probabilities: np.ndarray) -> list[dict[str, Any]]:
    """Rows of probabilities as the HTTP contract's {"label", "score", "scores"} dicts."""
    predictions = []
    for row in probabilities:
        best = int(row.argmax())
        predictions.append(
            {
                "label": labels[best],
                "score": float(row[best]),
                "scores": {label: float(p) for label, p in zip(labels, row, strict=True)},
            }
        )
    return predictions
