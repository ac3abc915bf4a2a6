"""Pure logic of the sentiment service: the variant spec, input and body limits, sub-batches.

No BentoML import here, so the tests exercise this module directly. It is copied into every
Bento next to `service.py` (the Bento is self-contained: no servebench install needed).
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextvars
import ctypes
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

VARIANT_FILE = "variant.json"
# Overrides the Bento's variant.json, for running service.py from the source tree by hand.
VARIANT_ENV = "SERVEBENCH_VARIANT_SPEC"
PR_SET_PDEATHSIG = 1

# The most bytes one character of a text can take in a JSON body: a code point outside the
# BMP written as an escaped surrogate pair, "\ud83d\ude00" (json.dumps' default). Raw UTF-8
# takes at most 4, a "\u00e9" escape 6.
JSON_BYTES_PER_CHAR = 12
# Room for the JSON around the texts: braces, keys, quotes, commas, and some whitespace.
BODY_ENVELOPE_BYTES = 64 * 1024
# Padded tokens (texts x longest text) one forward pass may hold, in texts at the model's
# max_length: bounds a pass's memory (attention grows with texts x length^2) and its time,
# which is how long inference can go on after a request's deadline. The default of the config
# key service.max_pass_tokens (null: derived; docs/service.md, "Limits").
PASS_TEXTS_AT_MAX_LENGTH = 4
# Tokens one request may hold after truncation, in texts at the model's max_length. Characters
# alone do not bound the cost: 64 texts of 10,000 characters are 64 x 512 tokens, about 97 s of
# one core with roberta-base in fp32, past any timeout; 16 x 512 take about 25 s. The default
# of the config key service.max_request_tokens (null: derived; docs/service.md, "Limits").
REQUEST_TEXTS_AT_MAX_LENGTH = 16
# After a request of at least this many characters, free memory goes back to the OS: the
# tokenizer keeps every part truncation cut off (64 texts of 10,000 emoji: ~180 MB), and long
# passes leave large buffers; glibc holds on to both (measured: docs/service.md, "Limits").
TRIM_AFTER_CHARS = 50_000

# When the API request being handled arrived (time.monotonic()), set by RequestLimitsMiddleware.
# A context variable reaches the worker thread BentoML runs a sync API in (anyio copies the
# context), but not BentoML's batch dispatcher: batched calls use their own start time.
REQUEST_STARTED_S: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "servebench_request_started_s", default=None
)


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


def release_free_memory(texts: Sequence[str], min_chars: int = TRIM_AFTER_CHARS) -> bool:
    """After large `texts`, give the C allocator's free memory back to the OS (glibc's
    malloc_trim; 2-35 ms); True when it did."""
    return sum(len(text) for text in texts) >= min_chars and malloc_trim()


def malloc_trim() -> bool:
    """glibc's malloc_trim(0): free heap memory back to the OS; False where there is none."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        return False
    return True


def check_text(text: str, max_text_chars: int) -> str:
    """Reject what the model cannot classify meaningfully; ValueError names the problem."""
    if not text.strip():
        raise ValueError("text is empty or whitespace-only")
    if len(text) > max_text_chars:
        raise ValueError(
            f"text has {len(text)} characters, over the limit max_text_chars = {max_text_chars}"
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


def check_text_count(texts: Any, max_batch_texts: int) -> Any:
    """Refuse a list of more than `max_batch_texts` texts before any text is validated."""
    if isinstance(texts, list):
        if not texts:
            raise ValueError(
                f"texts is empty: send at least 1 and at most max_batch_texts = {max_batch_texts}"
            )
        if len(texts) > max_batch_texts:
            raise ValueError(
                f"texts has {len(texts)} items, over the limit max_batch_texts = "
                f"{max_batch_texts} (send at most {max_batch_texts} per request)"
            )
    return texts


def request_token_limit(
    max_length: int, max_batch_texts: int, configured: int | None = None
) -> int:
    """Tokens (after truncation at `max_length` per text) one request may hold:
    service.max_request_tokens when set, else min(16, max_batch_texts) texts at max_length."""
    if configured is not None:
        return int(configured)
    return min(REQUEST_TEXTS_AT_MAX_LENGTH, max_batch_texts) * max_length


def pass_token_limit(max_length: int, configured: int | None = None) -> int:
    """Padded tokens (texts x longest text) one forward pass may hold:
    service.max_pass_tokens when set, else 4 texts at max_length."""
    if configured is not None:
        return int(configured)
    return PASS_TEXTS_AT_MAX_LENGTH * max_length


def check_request_tokens(classifier: Any, texts: Sequence[str], max_request_tokens: int) -> None:
    """Refuse texts that hold more than `max_request_tokens` tokens, after the runtime's
    truncation at its max_length per text; tokenizes only when the texts could be over."""
    max_length = int(classifier.max_length)
    if len(texts) * max_length <= max_request_tokens:
        return
    tokens = int(token_lengths(classifier, texts).sum())
    if tokens > max_request_tokens:
        raise ValueError(
            f"texts hold {tokens} tokens ({len(texts)} texts, each truncated at max_length = "
            f"{max_length}), over the limit max_request_tokens = {max_request_tokens}"
        )


def check_fields(data: Any, allowed: Sequence[str], route: str) -> Any:
    """Refuse a JSON object with a field the API does not take, naming the field."""
    if isinstance(data, dict):
        unknown = [key for key in data if key not in allowed]
        if unknown:
            names = ", ".join(repr(key) for key in unknown)
            takes = ", ".join(repr(key) for key in allowed)
            raise ValueError(
                f"unknown field{'s' if len(unknown) > 1 else ''} {names}: {route} takes only {takes}"
            )
    return data


@dataclass(frozen=True)
class BodyLimit:
    """The largest body a valid request to one route can have, and how it is derived."""

    max_bytes: int
    derivation: str


def body_limits(max_text_chars: int, max_batch_texts: int) -> dict[str, BodyLimit]:
    """Body limit of each API route, from the input limits: every text at its longest, in
    its most verbose JSON, plus an envelope."""
    one = max_text_chars * JSON_BYTES_PER_CHAR
    return {
        "/classify": BodyLimit(
            one + BODY_ENVELOPE_BYTES,
            f"max_text_chars {max_text_chars} x {JSON_BYTES_PER_CHAR} bytes per character "
            f"+ {BODY_ENVELOPE_BYTES} bytes of envelope",
        ),
        "/classify_batch": BodyLimit(
            max_batch_texts * one + BODY_ENVELOPE_BYTES,
            f"max_batch_texts {max_batch_texts} x max_text_chars {max_text_chars} x "
            f"{JSON_BYTES_PER_CHAR} bytes per character + {BODY_ENVELOPE_BYTES} bytes of envelope",
        ),
    }


def _content_length(headers: Sequence[tuple[bytes, bytes]]) -> int | None:
    for key, value in headers:
        if key.lower() == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the HTTP server refuses it before the app sees it
    return None


class RequestLimitsMiddleware:
    """ASGI middleware: a 413 to a body over its route's limit, before the body is read.

    BentoML reads a whole body into memory before any validation, so a large body (a 500 MB
    upload, or a chunked one that never ends) would be held by the worker. Here a declared
    Content-Length over the limit is answered at once, without reading a byte; a body without
    one (Transfer-Encoding: chunked) is read up to the limit, and answered 413 as soon as it
    passes it. The connection is closed after a 413, so the rest is never read. A body within
    the limit is handed to BentoML whole. Also records when the request arrived
    (REQUEST_STARTED_S), which the service turns into a deadline.
    """

    def __init__(self, app: Any, limits: Mapping[str, BodyLimit]) -> None:
        self.app = app
        self.limits = dict(limits)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        limit = self.limits.get(scope.get("path", "")) if scope.get("type") == "http" else None
        if limit is None:
            await self.app(scope, receive, send)
            return
        REQUEST_STARTED_S.set(time.monotonic())
        declared = _content_length(scope.get("headers", []))
        if declared is not None and declared > limit.max_bytes:
            await self._reject(scope, send, limit, f"its Content-Length is {declared} bytes")
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return  # the client left: nobody to answer
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit.max_bytes:
                chunks.clear()
                await self._reject(scope, send, limit, f"more than {limit.max_bytes} bytes arrived")
                malloc_trim()  # the limit's worth of chunks just freed
                return
            if chunk:
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        del chunks
        replayed = False

        async def replay() -> dict[str, Any]:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: waits for a disconnect

        await self.app(scope, replay, send)

    @staticmethod
    async def _reject(scope: dict[str, Any], send: Any, limit: BodyLimit, why: str) -> None:
        message = (
            f"request body too large for {scope['path']}: {why}, over the limit max_body_bytes "
            f"= {limit.max_bytes} ({limit.derivation})"
        )
        body = json.dumps(
            {"error": message, "limit": "max_body_bytes", "max_body_bytes": limit.max_bytes}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    # The rest of the body is not read: the connection cannot carry on.
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body, "more_body": False})


def token_lengths(classifier: Any, texts: Sequence[str]) -> np.ndarray:
    """Number of real (non-padding) tokens of each text, after truncation."""
    _, attention_mask = classifier.encode(texts)
    return attention_mask.sum(axis=1)


class DeadlineExceeded(RuntimeError):
    """The request's deadline passed between two forward passes: its answer is no use."""


def plan_passes(lengths: np.ndarray, sub_batch_size: int, max_pass_tokens: int) -> list[np.ndarray]:
    """Indices of the texts of each forward pass: sorted by token length, at most
    `sub_batch_size` texts (0: no count limit) and at most `max_pass_tokens` padded tokens
    (texts x longest; 0: no token limit) per pass. A text longer than the token limit on its
    own gets a pass of its own."""
    order = np.argsort(lengths, kind="stable")
    passes: list[np.ndarray] = []
    start = 0
    for end in range(1, len(order) + 1):
        if end < len(order):
            count = end + 1 - start
            longest = int(lengths[order[end]])  # sorted: the next text is the longest
            fits_count = sub_batch_size <= 0 or count <= sub_batch_size
            fits_tokens = max_pass_tokens <= 0 or count * longest <= max_pass_tokens
            if fits_count and fits_tokens:
                continue
        passes.append(order[start:end])
        start = end
    return passes


def predict_proba_sorted(
    classifier: Any,
    texts: Sequence[str],
    sub_batch_size: int,
    max_pass_tokens: int = 0,
    deadline_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
    on_pass: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> np.ndarray:
    """Probabilities of `texts`, computed in forward passes of bounded size.

    A padded batch costs as if every text were as long as its longest one; on a CPU that waste
    outweighs what a large batch saves. Sorting by length and running small sub-batches keeps
    padding low. Rows come back in the order of `texts`. A batch of at most `sub_batch_size`
    texts (any number for 0) that holds at most `max_pass_tokens` padded tokens runs as it
    comes, one padded batch; a larger one is sorted and cut into passes within both limits
    (`plan_passes`), so even the largest valid request (64 texts at the model's max_length)
    never becomes one padded 64 x 512 batch. Before each pass, the clock is checked against
    `deadline_s` (DeadlineExceeded): inference goes on at most one pass past a deadline.
    `on_pass(indices, probabilities)` is told each pass's rows as soon as it has run (the
    greedy batcher answers their requests then, not at the end of the batch).
    """
    n = len(texts)
    within_count = sub_batch_size <= 0 or n <= sub_batch_size
    max_length = getattr(classifier, "max_length", None)
    one_pass = within_count and (
        max_pass_tokens <= 0 or (max_length is not None and n * max_length <= max_pass_tokens)
    )
    if not one_pass:
        lengths = token_lengths(classifier, texts)
        one_pass = within_count and n * int(lengths.max(initial=0)) <= max_pass_tokens
    if one_pass:
        _check_deadline(deadline_s, clock, done=0, total=n)
        probabilities = classifier.predict_proba(list(texts))
        if on_pass is not None:
            on_pass(np.arange(n), probabilities)
        return probabilities
    probabilities = np.empty((n, len(classifier.labels)), dtype=np.float64)
    done = 0
    for chunk in plan_passes(lengths, sub_batch_size, max_pass_tokens):
        _check_deadline(deadline_s, clock, done=done, total=n)
        probabilities[chunk] = classifier.predict_proba([texts[i] for i in chunk])
        if on_pass is not None:
            on_pass(chunk, probabilities[chunk])
        done += len(chunk)
    return probabilities


def _check_deadline(
    deadline_s: float | None, clock: Callable[[], float], done: int, total: int
) -> None:
    if deadline_s is not None and clock() > deadline_s:
        raise DeadlineExceeded(
            f"the request's deadline (timeout_s) passed with {done} of {total} texts done: "
            "stopped before the next forward pass"
        )


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


# Told the answers to some of a batch's texts (their indices in the batch) before it is done.
OnAnswers = Callable[[Sequence[int], Sequence[Any]], None]


class GreedyBatcher:
    """Greedy batching (`batching.dispatcher: greedy`): requests wait in arrival order, and
    whenever the model is free, if at least `min_batch_texts` texts wait, the waiting requests
    (whole requests, up to `max_batch_texts` texts) run as one batch, which `predict` sorts by
    length into sub-batches (a wider sort window pads less); with fewer waiting, the oldest
    request runs alone, as without batching (a small padded batch runs slower per text than
    single requests). Nothing ever waits for a batch to fill. BentoML's adaptive batcher
    instead decides from its latency model when to dispatch.

    `predict(texts, started_s, on_answers)` runs in one thread of its own (one batch at a
    time, off the event loop) and returns one answer per text. It may call
    `on_answers(indices, answers)` as parts of the batch are done (the service does after each
    sorted sub-batch): a request is answered as soon as all its texts are, not when the whole
    batch is, so short texts sorted to the front do not wait for the long ones. A request
    BentoML has cancelled (its timeout) while it waited is left out of the next batch.
    """

    def __init__(
        self,
        predict: Callable[[list[str], float, OnAnswers], list[Any]],
        max_batch_texts: int,
        min_batch_texts: int = 1,
        on_batch: Callable[[int], None] = lambda texts: None,
    ):
        self.predict = predict
        self.max_batch_texts = max_batch_texts
        self.min_batch_texts = min_batch_texts
        self.on_batch = on_batch  # told each batch's number of texts (the service's metric)
        self.waiting: collections.deque[tuple[list[str], asyncio.Future]] = collections.deque()
        self.drain: asyncio.Task | None = None
        self.executor = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="inference")

    async def submit(self, texts: Sequence[str]) -> list[Any]:
        """The answers to one request's `texts`, once a batch holding them has run."""
        future = asyncio.get_running_loop().create_future()
        self.waiting.append((list(texts), future))
        if self.drain is None or self.drain.done():
            self.drain = asyncio.create_task(self._drain())
        return await future

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        # A request cancelled by BentoML's timeout while it waited is dropped.
        self.waiting = collections.deque(item for item in self.waiting if not item[1].done())
        waiting_texts = sum(len(texts) for texts, _ in self.waiting)
        limit = self.max_batch_texts if waiting_texts >= self.min_batch_texts else 0
        batch: list[tuple[list[str], asyncio.Future]] = []
        count = 0
        while self.waiting:
            texts = self.waiting[0][0]
            if batch and count + len(texts) > limit:
                break
            batch.append(self.waiting.popleft())
            count += len(texts)
        return batch

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while batch := self._take():
            texts = [text for request_texts, _ in batch for text in request_texts]
            self.on_batch(len(texts))
            answers = _BatchAnswers(batch, loop)
            try:
                # The deadline counts from the batch's start, as in BentoML's batcher.
                every_answer = await loop.run_in_executor(
                    self.executor, self.predict, texts, time.monotonic(), answers.from_thread
                )
            except Exception as error:  # every request not answered yet gets it (a 500)
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            # Callbacks run in the order they were scheduled: every part is in by now.
            answers.add(range(len(texts)), every_answer)


class _BatchAnswers:
    """A batch's answers as they come in, each request's future set once all its texts are
    answered."""

    def __init__(
        self,
        batch: Sequence[tuple[list[str], asyncio.Future]],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.batch = batch
        self.loop = loop
        # Text i of the batch is text owner[i][1] of request owner[i][0].
        self.owner = [(r, t) for r, (texts, _) in enumerate(batch) for t in range(len(texts))]
        self.answered = [False] * len(self.owner)
        self.answers: list[list[Any]] = [[None] * len(texts) for texts, _ in batch]
        self.missing = [len(texts) for texts, _ in batch]

    def from_thread(self, indices: Sequence[int], answers: Sequence[Any]) -> None:
        """`add`, called from the inference thread: the futures belong to the event loop."""
        self.loop.call_soon_threadsafe(self.add, list(indices), list(answers))

    def add(self, indices: Sequence[int], answers: Sequence[Any]) -> None:
        for index, answer in zip(indices, answers, strict=True):
            if self.answered[index]:
                continue
            self.answered[index] = True
            request, text = self.owner[index]
            self.answers[request][text] = answer
            self.missing[request] -= 1
            future = self.batch[request][1]
            if self.missing[request] == 0 and not future.done():
                future.set_result(self.answers[request])
