"""Model preparation: resolve the model, build its runtimes, check fidelity, benchmark in-process.

Stages (each called by a thin script under workflow/scripts/):

- `resolve_model`: which model the config means, in this order: `model.local_dir` (a
  `save_pretrained` directory), the Hugging Face cache, the hub (only when reachable: offline is
  detected fast, never by waiting on a network timeout), and, only with `model.fallback:
  synthetic`, a synthetic model of the configured architecture (RoBERTa-base by default) with
  seeded random weights and a byte-level BPE tokenizer trained on the bundled corpus.
- `prepare_pytorch`, `export_onnx`, `quantize_onnx`, `convert_fp16`: runtime directories that
  `servebench.runtime.load_runtime` loads (`provenance.json` + `files/`).
- `load_payloads`, `token_lengths`: the request payload set and its token length distribution.
- `predict_payloads`, `fidelity_report`, `check_fidelity`: agreement of a runtime with pytorch
  fp32, and the gate that fails the workflow below `model.fidelity.min_label_agreement`.
- `inprocess_bench`: latency and throughput per runtime, batch size and thread count, pinned
  to the server's cores.

Heavy libraries (torch, transformers, optimum) are imported inside the functions that need
them, so the workflow can import this module at parse time to name the model.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd

from servebench.provenance import REPO_ROOT, cpu_info, environment, write_json
from servebench.runtime import (
    CUDA_RUNTIMES,
    FILES_DIR,
    PROVENANCE_FILE,
    TOKENIZER_FILE,
    load_runtime,
    read_provenance,
)

logger = logging.getLogger("servebench.model")

BUNDLED_CORPUS = REPO_ROOT / "data" / "texts.csv"
DEFAULT_MODEL_ID = "cardiffnlp/twitter-roberta-base-sentiment-latest"
# The architecture of roberta-base; a synthetic model with exactly this one is named
# `synthetic-roberta-base`.
ROBERTA_BASE = {
    "num_hidden_layers": 12,
    "hidden_size": 768,
    "num_attention_heads": 12,
    "intermediate_size": 3072,
    "vocab_size": 50265,
    "max_position_embeddings": 514,
}
DEFAULT_SYNTHETIC: dict[str, Any] = {
    **ROBERTA_BASE,
    "labels": ["negative", "neutral", "positive"],
    "seed": 0,
    "initializer_range": 0.02,
}
# Random encoders give nearly the same [CLS] representation to every text, so a random head
# puts every text in the same class by a constant margin: a fidelity check on that is vacuous.
# The synthetic head's output layer is therefore fitted (deterministically) to the corpus: an
# ordinal head on the first principal component of the head's features, with balanced labels
# and margins that vary from text to text as with real weights (see `fit_synthetic_head`).
SYNTHETIC_HEAD_GAIN = 4.0
SYNTHETIC_HEAD_TEXTS = 256
SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # RoBERTa's ids 0..4
TOKENIZER_FILES = (
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)
QUANTIZATION_ISAS = ("avx512_vnni", "avx2", "arm64")
HUB_CHECK_TIMEOUT_S = 2.0


class ModelUnavailableError(RuntimeError):
    """The configured model cannot be found and the fallback does not allow a synthetic one."""


class FidelityError(RuntimeError):
    """A runtime changes the model's answers more than the configured gate allows."""


# --------------------------------------------------------------------------- resolution


@dataclass
class Resolution:
    """Where the model comes from. `kind`: local | hf-cache | hf-hub | synthetic."""

    kind: str
    name: str
    model_id: str
    weights: str  # real | synthetic
    path: str | None = None
    reason: str = ""
    synthetic: dict[str, Any] = field(default_factory=dict)


def safe_name(text: str) -> str:
    """A filesystem-safe name: `org/model` -> `org--model`, other odd characters -> `-`."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", text.strip().replace("/", "--")).strip("-.")
    if not name:
        raise ValueError(f"cannot make a file name from {text!r}")
    return name


def synthetic_settings(model_config: dict[str, Any]) -> dict[str, Any]:
    return {**DEFAULT_SYNTHETIC, **(model_config.get("synthetic") or {})}


def synthetic_name(settings: dict[str, Any]) -> str:
    """`synthetic-roberta-base` for the roberta-base architecture, else e.g.
    `synthetic-roberta-2l-64h` (layers and hidden size)."""
    if all(settings[key] == value for key, value in ROBERTA_BASE.items()):
        return "synthetic-roberta-base"
    return f"synthetic-roberta-{settings['num_hidden_layers']}l-{settings['hidden_size']}h"


def hub_offline_reason() -> str | None:
    """Why the hub counts as offline from the environment alone (None: it may be online)."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in ("1", "true", "yes", "on"):
            return f"{variable} is set"
    return None


def hub_reachable(timeout_s: float = HUB_CHECK_TIMEOUT_S) -> tuple[bool, str]:
    """(reachable, reason) of the Hugging Face hub, decided within `timeout_s`.

    The TCP connection (and its DNS lookup, which socket timeouts do not cover) runs in a
    daemon thread, so a black-holed network costs at most `timeout_s`.
    """
    offline = hub_offline_reason()
    if offline:
        return False, offline
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    parsed = urlparse(endpoint)
    host = parsed.hostname or "huggingface.co"
    port = parsed.port or (443 if parsed.scheme != "http" else 80)
    outcome: dict[str, Any] = {}

    def connect() -> None:
        try:
            with socket.create_connection((host, port), timeout=timeout_s):
                outcome["ok"] = True
        except OSError as error:
            outcome["error"] = f"{type(error).__name__}: {error}"

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout_s)
    if outcome.get("ok"):
        return True, f"{host}:{port} reachable"
    return (
        False,
        f"{host}:{port} unreachable ({outcome.get('error', f'no answer in {timeout_s}s')})",
    )


def hf_cached_snapshot(model_id: str) -> Path | None:
    """The local HF cache snapshot of `model_id` holding a config.json, or None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:  # pragma: no cover - huggingface_hub comes with transformers
        return None
    try:
        found = try_to_load_from_cache(model_id, "config.json")
    except Exception:  # noqa: BLE001 - malformed ids and the like: simply not cached
        return None
    if isinstance(found, str) and Path(found).is_file():
        snapshot = Path(found).parent
        if any((snapshot / name).exists() for name in ("model.safetensors", "pytorch_model.bin")):
            return snapshot
    return None


def hub_has_model(model_id: str, timeout_s: float = 10.0) -> tuple[bool, str]:
    """Whether the (reachable) hub serves `model_id`."""
    try:
        from huggingface_hub import HfApi

        HfApi().model_info(model_id, timeout=timeout_s)
    except Exception as error:  # noqa: BLE001 - any failure means "not available"
        return False, f"hub lookup of {model_id} failed: {type(error).__name__}: {error}"
    return True, f"{model_id} found on the hub"


def resolve_model(
    model_config: dict[str, Any],
    *,
    check_hub: Callable[[], tuple[bool, str]] = hub_reachable,
    check_model: Callable[[str], tuple[bool, str]] = hub_has_model,
    cached_snapshot: Callable[[str], Path | None] = hf_cached_snapshot,
) -> Resolution:
    """Decide where the model comes from (no download, no model loading; fast offline)."""
    model_id = model_config.get("id") or DEFAULT_MODEL_ID
    local_dir = model_config.get("local_dir") or ""
    fallback = model_config.get("fallback", "synthetic")
    if local_dir:
        path = Path(local_dir).expanduser()
        if not (path / "config.json").is_file():
            raise ModelUnavailableError(
                f"model.local_dir {local_dir!r} is not a save_pretrained directory "
                '(no config.json); fix the path or set model.local_dir to ""'
            )
        return Resolution(
            kind="local",
            name="local-" + safe_name(path.resolve().name),
            model_id=str(path.resolve()),
            weights="real",
            path=str(path.resolve()),
            reason=f"model.local_dir {local_dir}",
        )
    snapshot = cached_snapshot(model_id)
    if snapshot is not None:
        return Resolution(
            kind="hf-cache",
            name=safe_name(model_id),
            model_id=model_id,
            weights="real",
            path=str(snapshot),
            reason=f"found in the Hugging Face cache ({snapshot})",
        )
    reachable, why = check_hub()
    if reachable:
        available, why_model = check_model(model_id)
        if available:
            return Resolution(
                kind="hf-hub",
                name=safe_name(model_id),
                model_id=model_id,
                weights="real",
                reason=why_model,
            )
        why = why_model
    reason = f"{model_id} is not in the local cache and the hub cannot provide it: {why}"
    if fallback != "synthetic":
        raise ModelUnavailableError(
            f"{reason}. model.fallback is {fallback!r}, so there is no synthetic stand-in: "
            "go online, fill the Hugging Face cache, set model.local_dir, or set "
            "model.fallback: synthetic"
        )
    settings = synthetic_settings(model_config)
    return Resolution(
        kind="synthetic",
        name=synthetic_name(settings),
        model_id=model_id,
        weights="synthetic",
        reason=reason,
        synthetic=settings,
    )


def synthetic_banner(resolution: Resolution) -> str:
    return (
        "\n" + "!" * 78 + "\n"
        f"SYNTHETIC MODEL '{resolution.name}': {resolution.reason}.\n"
        "Using seeded RANDOM weights with the configured architecture and a tokenizer trained\n"
        "on the bundled corpus. Latency and throughput figures are meaningful; accuracy figures\n"
        "are NOT. Set model.fallback: none to make this an error instead.\n" + "!" * 78
    )


# --------------------------------------------------------------------------- files, provenance


def file_sha256(path: Path, chunk_bytes: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(files_dir: Path) -> dict[str, Any]:
    """Size and sha256 of every file of a runtime, and their total size on disk."""
    files = {}
    for path in sorted(p for p in files_dir.rglob("*") if p.is_file()):
        files[str(path.relative_to(files_dir))] = {
            "bytes": path.stat().st_size,
            "sha256": file_sha256(path),
        }
    return {
        "files": files,
        "size_on_disk_bytes": sum(entry["bytes"] for entry in files.values()),
    }


def measure_load_subprocess(runtime_dir: Path, timeout_s: float = 600) -> dict[str, Any]:
    """Peak RSS and time of loading a runtime, in a fresh Python process (so nothing this
    process already imported or allocated counts)."""
    completed = subprocess.run(
        [sys.executable, "-m", "servebench.runtime", str(runtime_dir)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env={
            **os.environ,
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(REPO_ROOT / "src"), os.environ.get("PYTHONPATH")])
            ),
        },
    )
    if completed.returncode != 0:
        raise RuntimeError(
            f"loading {runtime_dir} in a subprocess failed:\n{completed.stderr[-3000:]}"
        )
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _start_runtime_dir(out_dir: Path) -> Path:
    """Empty `out_dir/files` (no stale files from an earlier build) and return it."""
    files_dir = out_dir / FILES_DIR
    if files_dir.exists():
        shutil.rmtree(files_dir)
    files_dir.mkdir(parents=True)
    (out_dir / PROVENANCE_FILE).unlink(missing_ok=True)
    return files_dir


def _finish_runtime_dir(out_dir: Path, provenance: dict[str, Any], measure_load: bool) -> dict:
    """Record files, hashes, sizes and the load measurement; write provenance.json last."""
    files_dir = out_dir / FILES_DIR
    provenance = {**provenance, "files_dir": FILES_DIR, **describe_files(files_dir)}
    provenance.setdefault("environment", environment())
    provenance.setdefault("created_unix_s", round(time.time(), 3))
    # load_runtime needs provenance.json; write it, measure, then rewrite with the figures.
    write_json(out_dir / PROVENANCE_FILE, provenance)
    if measure_load:
        provenance["load"] = measure_load_subprocess(out_dir)
        write_json(out_dir / PROVENANCE_FILE, provenance)
    return provenance


def _copy_tokenizer(source_dir: Path, target_dir: Path) -> None:
    for name in (*TOKENIZER_FILES, "config.json"):
        if (source_dir / name).is_file():
            shutil.copy2(source_dir / name, target_dir / name)


def _max_length(model_config: Any, tokenizer_max_length: int | None) -> int:
    """Longest input the model accepts: RoBERTa-style position ids start after the pad id."""
    positions = int(model_config.max_position_embeddings)
    if "roberta" in str(getattr(model_config, "model_type", "")) or "camembert" in str(
        getattr(model_config, "model_type", "")
    ):
        positions -= int(model_config.pad_token_id or 0) + 1
    if tokenizer_max_length and tokenizer_max_length < 10**6:
        return min(positions, int(tokenizer_max_length))
    return positions


# --------------------------------------------------------------------------- synthetic model


def read_corpus_texts(path: str | Path) -> list[str]:
    frame = pd.read_csv(path)
    if "text" not in frame.columns:
        raise ValueError(f"{path}: no 'text' column (columns: {', '.join(frame.columns)})")
    return [text for text in frame["text"].dropna().astype(str) if text.strip()]


def train_bpe(
    texts: Sequence[str], vocab_size: int, min_frequency: int = 2
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Byte-level BPE vocabulary and merges learned from `texts`, deterministically.

    The `tokenizers` trainer breaks ties between equally frequent pairs in hash-map order, so
    two processes can learn different merges from the same corpus; here ties go to the
    lexicographically smallest pair. Stops at `vocab_size` tokens or when no pair occurs
    `min_frequency` times.
    """
    import heapq
    from collections import Counter, defaultdict

    from tokenizers.pre_tokenizers import ByteLevel

    pre_tokenizer = ByteLevel(add_prefix_space=False, use_regex=True)
    word_counts: Counter[str] = Counter()
    for text in texts:
        word_counts.update(piece for piece, _ in pre_tokenizer.pre_tokenize_str(text))
    unique_words = sorted(word_counts)
    words = [list(word) for word in unique_words]
    frequencies = [word_counts[word] for word in unique_words]
    pair_counts: Counter[tuple[str, str]] = Counter()
    pair_words: defaultdict[tuple[str, str], set[int]] = defaultdict(set)
    for index, symbols in enumerate(words):
        for pair in zip(symbols, symbols[1:], strict=False):
            pair_counts[pair] += frequencies[index]
            pair_words[pair].add(index)
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab.setdefault(symbol, len(vocab))
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[str, str]] = []
    while heap and len(vocab) < vocab_size:
        negative_count, pair = heapq.heappop(heap)
        if -negative_count != pair_counts.get(pair, 0):
            continue  # stale entry: the count changed since it was pushed
        if -negative_count < min_frequency:
            break
        merged = pair[0] + pair[1]
        merges.append(pair)
        vocab.setdefault(merged, len(vocab))
        changed: set[tuple[str, str]] = set()
        for index in sorted(pair_words.pop(pair, ())):
            symbols, frequency = words[index], frequencies[index]
            for old in zip(symbols, symbols[1:], strict=False):
                pair_counts[old] -= frequency
                changed.add(old)
            new_symbols, position = [], 0
            while position < len(symbols):
                if tuple(symbols[position : position + 2]) == pair:
                    new_symbols.append(merged)
                    position += 2
                else:
                    new_symbols.append(symbols[position])
                    position += 1
            words[index] = new_symbols
            for new in zip(new_symbols, new_symbols[1:], strict=False):
                pair_counts[new] += frequency
                pair_words[new].add(index)
                changed.add(new)
        pair_counts.pop(pair, None)
        for changed_pair in sorted(changed - {pair}):
            count = pair_counts.get(changed_pair, 0)
            if count > 0:
                heapq.heappush(heap, (-count, changed_pair))
            else:
                pair_counts.pop(changed_pair, None)
    return vocab, merges


def train_tokenizer(
    texts: Sequence[str], vocab_size: int, max_length: int, out_dir: str | Path
) -> Any:
    """Train a byte-level BPE on `texts` (`train_bpe`) and save it as a RobertaTokenizerFast
    in `out_dir` (tokenizer.json, vocab.json, merges.txt, ...).

    A small corpus yields fewer tokens than `vocab_size`; the model keeps the configured
    vocabulary size (rows beyond the tokenizer's are never looked up), recorded in provenance.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import RobertaTokenizerFast

    if not texts:
        raise ValueError("cannot train a tokenizer on an empty corpus")
    vocab, merges = train_bpe(texts, vocab_size)
    backend = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.RobertaProcessing(
        ("</s>", vocab["</s>"]), ("<s>", vocab["<s>"]), trim_offsets=True, add_prefix_space=False
    )
    backend.add_special_tokens(SPECIAL_TOKENS)
    tokenizer = RobertaTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        sep_token="</s>",
        cls_token="<s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>",
        model_max_length=max_length,
    )
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(out_dir)
    backend.model.save(str(out_dir))  # vocab.json + merges.txt, as roberta-base ships them
    return tokenizer


def build_synthetic_model(settings: dict[str, Any]) -> Any:
    """RobertaForSequenceClassification with seeded random weights (see `fit_synthetic_head`)."""
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    labels = list(settings["labels"])
    config = RobertaConfig(
        vocab_size=settings["vocab_size"],
        hidden_size=settings["hidden_size"],
        num_hidden_layers=settings["num_hidden_layers"],
        num_attention_heads=settings["num_attention_heads"],
        intermediate_size=settings["intermediate_size"],
        max_position_embeddings=settings["max_position_embeddings"],
        type_vocab_size=1,
        pad_token_id=1,
        bos_token_id=0,
        eos_token_id=2,
        layer_norm_eps=1e-5,
        initializer_range=float(settings["initializer_range"]),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )
    generator_state = torch.random.get_rng_state()
    torch.manual_seed(int(settings["seed"]))
    try:
        model = RobertaForSequenceClassification(config)
    finally:
        torch.random.set_rng_state(generator_state)
    return model.eval()


def fit_synthetic_head(
    model: Any,
    tokenizer_json: str | Path,
    texts: Sequence[str],
    *,
    seed: int = 0,
    gain: float = SYNTHETIC_HEAD_GAIN,
    max_texts: int = SYNTHETIC_HEAD_TEXTS,
) -> dict[str, Any]:
    """Set the output layer of a synthetic model's head so that its logits vary across texts.

    The score of a text is the standardized projection of the head's tanh features on their
    first principal component over a seeded sample of the corpus; label k wins between the
    k-th and (k+1)-th quantiles of the score, logits grow with `gain` x the distance to the
    thresholds. Deterministic for a given model, corpus and seed. Returns a summary for
    provenance.
    """
    import torch
    from tokenizers import Tokenizer

    n_labels = model.config.num_labels
    rng = np.random.default_rng(seed)
    sample = [texts[i] for i in rng.permutation(len(texts))[:max_texts]]
    if len(sample) <= n_labels:
        raise ValueError(f"need more than {n_labels} corpus texts to fit the synthetic head")
    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.enable_truncation(max_length=int(model.config.max_position_embeddings) - 2)
    tokenizer.enable_padding(pad_id=1, pad_token="<pad>")
    sample.sort(key=len)  # similar lengths per batch: less padding
    features = []
    with torch.inference_mode():
        for start in range(0, len(sample), 16):
            encodings = tokenizer.encode_batch(sample[start : start + 16])
            hidden = model.roberta(
                input_ids=torch.tensor([e.ids for e in encodings]),
                attention_mask=torch.tensor([e.attention_mask for e in encodings]),
            ).last_hidden_state[:, 0]
            features.append(torch.tanh(model.classifier.dense(hidden)).double().numpy())
    matrix = np.concatenate(features)
    mean = matrix.mean(axis=0)
    _, singular_values, components = np.linalg.svd(matrix - mean, full_matrices=False)
    direction = components[0] / (singular_values[0] / np.sqrt(len(matrix)))
    score = (matrix - mean) @ direction  # standardized first principal component
    # Ordinal head (like sentiment): label k wins where the score lies between the k-th and
    # (k+1)-th n_labels-quantiles of the corpus, so labels are balanced. Logit k is
    # gain * (k * score - sum of the first k thresholds), piecewise-linear in the score.
    thresholds = np.quantile(score, np.arange(1, n_labels) / n_labels)
    offsets = np.concatenate([[0.0], np.cumsum(thresholds)])
    slopes = np.arange(n_labels, dtype=np.float64)
    slopes -= slopes.mean()
    weight = gain * np.outer(slopes, direction)
    bias = gain * (-offsets - slopes * (mean @ direction))
    bias -= bias.mean()
    with torch.no_grad():
        model.classifier.out_proj.weight.copy_(torch.from_numpy(weight))
        model.classifier.out_proj.bias.copy_(torch.from_numpy(bias))
    return {
        "method": "ordinal head on the first principal component of the head features",
        "n_texts": len(sample),
        "gain": gain,
        "thresholds": [float(value) for value in thresholds],
        "feature_std_of_components": [
            float(value / np.sqrt(len(matrix))) for value in singular_values[:4]
        ],
    }


# --------------------------------------------------------------------------- runtimes


def prepare_pytorch(
    model_config: dict[str, Any],
    out_dir: str | Path,
    *,
    corpus_path: str | Path = BUNDLED_CORPUS,
    expected_name: str | None = None,
    resolution: Resolution | None = None,
    measure_load: bool = True,
) -> dict[str, Any]:
    """The `pytorch` (fp32) runtime: the resolved model and tokenizer, `save_pretrained`."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    resolution = resolution or resolve_model(model_config)
    if expected_name is not None and resolution.name != expected_name:
        raise ModelUnavailableError(
            f"the model resolves to {resolution.name!r} now but to {expected_name!r} when the "
            f"workflow started ({resolution.reason}); run the workflow again"
        )
    out_dir = Path(out_dir)
    files_dir = _start_runtime_dir(out_dir)
    extra: dict[str, Any] = {}
    if resolution.kind == "synthetic":
        logger.warning(synthetic_banner(resolution))
        settings = resolution.synthetic
        max_length = int(settings["max_position_embeddings"]) - 2
        texts = read_corpus_texts(corpus_path)
        tokenizer = train_tokenizer(texts, int(settings["vocab_size"]), max_length, files_dir)
        model = build_synthetic_model(settings)
        head = fit_synthetic_head(
            model, files_dir / TOKENIZER_FILE, texts, seed=int(settings["seed"])
        )
        extra = {
            "synthetic": settings,
            "synthetic_head": head,
            "tokenizer_corpus": {
                "path": str(corpus_path),
                "sha256": file_sha256(Path(corpus_path)),
                "n_texts": len(texts),
            },
            "tokenizer_vocab_size": len(tokenizer),
            "model_vocab_size": int(settings["vocab_size"]),
        }
        if len(tokenizer) < int(settings["vocab_size"]):
            extra["vocab_note"] = (
                f"the tokenizer learned {len(tokenizer)} tokens from the corpus; the model "
                f"keeps {settings['vocab_size']} embedding rows (roberta-base size), the rest "
                "are never looked up"
            )
    else:
        source: str = resolution.path or resolution.model_id
        if resolution.kind == "hf-hub":
            from huggingface_hub import snapshot_download

            logger.info("downloading %s from the hub", resolution.model_id)
            source = snapshot_download(resolution.model_id)
        tokenizer = AutoTokenizer.from_pretrained(source, use_fast=True)
        if not getattr(tokenizer, "is_fast", False):
            raise ModelUnavailableError(f"{source}: a fast tokenizer (tokenizer.json) is needed")
        model = AutoModelForSequenceClassification.from_pretrained(source, dtype=torch.float32)
        tokenizer.save_pretrained(files_dir)
        extra = {"source_path": str(source), "tokenizer_vocab_size": len(tokenizer)}
    model = model.float().eval()
    model.save_pretrained(files_dir, safe_serialization=True)
    config = model.config
    labels = [config.id2label[index] for index in range(config.num_labels)]
    provenance = {
        "runtime": "pytorch",
        "dtype": "float32",
        "model_name": resolution.name,
        "model_id": resolution.model_id,
        "source": resolution.kind,
        "weights": resolution.weights,
        "resolution_reason": resolution.reason,
        "model_file": "model.safetensors",
        "labels": labels,
        "max_length": _max_length(config, getattr(tokenizer, "model_max_length", None)),
        "pad_token_id": int(tokenizer.pad_token_id),
        "model_type": config.model_type,
        "num_parameters": int(sum(p.numel() for p in model.parameters())),
        "architecture": {key: getattr(config, key, None) for key in (*ROBERTA_BASE, "num_labels")},
        **extra,
    }
    return _finish_runtime_dir(out_dir, provenance, measure_load)


def _derived_provenance(parent: dict[str, Any], runtime: str, **fields: Any) -> dict[str, Any]:
    keep = (
        "model_name",
        "model_id",
        "source",
        "weights",
        "resolution_reason",
        "labels",
        "max_length",
        "pad_token_id",
        "model_type",
        "num_parameters",
        "architecture",
        "synthetic",
        "tokenizer_vocab_size",
        "model_vocab_size",
    )
    derived = {key: parent[key] for key in keep if key in parent}
    return {**derived, "runtime": runtime, **fields}


def export_onnx(
    pytorch_dir: str | Path,
    out_dir: str | Path,
    *,
    opset: int | None = None,
    measure_load: bool = True,
) -> dict[str, Any]:
    """The `onnx` runtime: the plain optimum export of the pytorch runtime (fp32).

    ONNX Runtime applies its graph optimizations at session start; the graph stays
    un-fused here so that dynamic quantization works on it (ORTQuantizer fails on an
    O2-optimized graph).
    """
    from optimum.exporters.onnx import main_export

    pytorch_dir = Path(pytorch_dir)
    parent = read_provenance(pytorch_dir)
    out_dir = Path(out_dir)
    files_dir = _start_runtime_dir(out_dir)
    main_export(
        model_name_or_path=str(pytorch_dir / FILES_DIR),
        output=files_dir,
        task="text-classification",
        opset=opset,
        device="cpu",
        do_validation=False,
        library_name="transformers",
        local_files_only=True,
    )
    _copy_tokenizer(pytorch_dir / FILES_DIR, files_dir)
    import onnx

    graph = onnx.load(str(files_dir / "model.onnx"), load_external_data=False)
    provenance = _derived_provenance(
        parent,
        "onnx",
        dtype="float32",
        model_file="model.onnx",
        parent_runtime={
            "runtime": "pytorch",
            "sha256": parent["files"]["model.safetensors"]["sha256"],
        },
        onnx_opset=max(
            entry.version for entry in graph.opset_import if entry.domain in ("", "ai.onnx")
        ),
        export="optimum.exporters.onnx.main_export (task text-classification, no post-optimization)",
    )
    return _finish_runtime_dir(out_dir, provenance, measure_load)


def choose_quantization_isa(flags: Sequence[str], machine: str = "") -> str:
    """The dynamic-quantization config for a CPU: avx512_vnni where present, else avx2, else
    arm64 (u8 activations with s8 weights, the config that needs no x86 extension)."""
    flag_set = {flag.lower() for flag in flags}
    if "avx512_vnni" in flag_set or "avx512vnni" in flag_set:
        return "avx512_vnni"
    if "avx2" in flag_set:
        return "avx2"
    if machine and machine.lower() not in ("aarch64", "arm64") and not flag_set & {"asimd", "neon"}:
        logger.warning(
            "CPU %s has neither AVX2, AVX-512 VNNI nor ARM NEON; using the arm64 quantization "
            "config (u8 activations, s8 weights), the most portable one",
            machine,
        )
    return "arm64"


def quantization_config(isa: str, per_channel: bool = False) -> Any:
    from optimum.onnxruntime.configuration import AutoQuantizationConfig

    if isa not in QUANTIZATION_ISAS:
        raise ValueError(
            f"unknown quantization ISA {isa!r} (known: {', '.join(QUANTIZATION_ISAS)})"
        )
    return getattr(AutoQuantizationConfig, isa)(is_static=False, per_channel=per_channel)


def quantize_onnx(
    onnx_dir: str | Path,
    out_dir: str | Path,
    *,
    isa: str | None = None,
    per_channel: bool = False,
    measure_load: bool = True,
) -> dict[str, Any]:
    """The `onnx-int8` runtime: dynamic INT8 quantization of the plain ONNX export, with the
    config chosen from this CPU's instruction set (recorded in provenance)."""
    from optimum.onnxruntime import ORTQuantizer

    onnx_dir = Path(onnx_dir)
    parent = read_provenance(onnx_dir)
    cpu = cpu_info()
    chosen = isa or choose_quantization_isa(_all_cpu_flags(), cpu["machine"])
    config = quantization_config(chosen, per_channel=per_channel)
    out_dir = Path(out_dir)
    files_dir = _start_runtime_dir(out_dir)
    quantizer = ORTQuantizer.from_pretrained(onnx_dir / FILES_DIR, file_name="model.onnx")
    quantizer.quantize(quantization_config=config, save_dir=files_dir)
    quantized = files_dir / "model_quantized.onnx"
    if not quantized.is_file():
        raise RuntimeError(f"quantization produced no {quantized}")
    _copy_tokenizer(onnx_dir / FILES_DIR, files_dir)
    provenance = _derived_provenance(
        parent,
        "onnx-int8",
        dtype="int8 (dynamic quantization; activations quantized at run time)",
        model_file="model_quantized.onnx",
        parent_runtime={"runtime": "onnx", "sha256": parent["files"]["model.onnx"]["sha256"]},
        onnx_opset=parent.get("onnx_opset"),
        quantization={
            "isa": chosen,
            "isa_chosen_from": "config" if isa else "cpu flags",
            "cpu_isa_flags": cpu["isa_flags"],
            "cpu_model": cpu["model"],
            "tool": "optimum.onnxruntime.ORTQuantizer",
            "is_static": False,
            "format": str(config.format),
            "activations_dtype": str(config.activations_dtype),
            "weights_dtype": str(config.weights_dtype),
            "per_channel": config.per_channel,
            "reduce_range": config.reduce_range,
            "operators_to_quantize": list(config.operators_to_quantize),
        },
    )
    return _finish_runtime_dir(out_dir, provenance, measure_load)


def _all_cpu_flags() -> list[str]:
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("flags", "Features"):
                return value.split()
    return []


def convert_fp16(
    source_dir: str | Path, out_dir: str | Path, runtime: str, *, measure_load: bool = False
) -> dict[str, Any]:
    """The CUDA fp16 runtimes: `pytorch-cuda-fp16` (half weights of the pytorch runtime) and
    `onnx-cuda-fp16` (the fp32 ONNX export converted to fp16, fp32 inputs/outputs kept).
    Building works on a CPU; loading needs a CUDA device."""
    if runtime not in CUDA_RUNTIMES:
        raise ValueError(f"{runtime!r} is not a CUDA runtime ({', '.join(CUDA_RUNTIMES)})")
    source_dir = Path(source_dir)
    parent = read_provenance(source_dir)
    out_dir = Path(out_dir)
    files_dir = _start_runtime_dir(out_dir)
    if runtime == "pytorch-cuda-fp16":
        import torch
        from transformers import AutoModelForSequenceClassification

        model = AutoModelForSequenceClassification.from_pretrained(
            source_dir / FILES_DIR, dtype=torch.float16
        )
        model.save_pretrained(files_dir, safe_serialization=True)
        model_file = "model.safetensors"
    else:
        import onnx
        from onnxruntime.transformers.float16 import convert_float_to_float16

        graph = onnx.load(str(source_dir / FILES_DIR / parent["model_file"]))
        onnx.save(
            convert_float_to_float16(graph, keep_io_types=True), str(files_dir / "model.onnx")
        )
        model_file = "model.onnx"
    _copy_tokenizer(source_dir / FILES_DIR, files_dir)
    provenance = _derived_provenance(
        parent,
        runtime,
        dtype="float16",
        model_file=model_file,
        parent_runtime={"runtime": parent["runtime"]},
    )
    return _finish_runtime_dir(out_dir, provenance, measure_load)


# --------------------------------------------------------------------------- payloads


def load_payloads(
    source: str, n_requests: int, seed: int, *, repo_root: Path = REPO_ROOT
) -> pd.DataFrame:
    """The payload set: a fixed-seed subset of `n_requests` texts (id, text, label), in the
    order the load tests send them. Fewer available texts -> all of them, shuffled."""
    frame = _read_payload_source(source, repo_root)
    frame = frame[frame["text"].notna()].copy()
    frame["text"] = frame["text"].astype(str)
    frame = frame[frame["text"].str.strip() != ""]
    if frame.empty:
        raise ValueError(f"data.source {source!r} has no non-empty texts")
    if "id" not in frame.columns:
        frame.insert(0, "id", [f"t{index:06d}" for index in range(len(frame))])
    if "label" not in frame.columns:
        frame["label"] = ""
    frame["label"] = frame["label"].fillna("").astype(str)
    if n_requests > len(frame):
        logger.warning(
            "data.n_requests is %d but %s has only %d texts: using all of them",
            n_requests,
            source,
            len(frame),
        )
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(frame), size=min(n_requests, len(frame)), replace=False)
    return frame.iloc[chosen][["id", "text", "label"]].reset_index(drop=True)


def payload_source_path(source: str, repo_root: Path = REPO_ROOT) -> Path | None:
    """The local file behind a data.source (None for hf:)."""
    if source == "bundled":
        return repo_root / "data" / "texts.csv"
    if source.startswith("csv:"):
        path = Path(source[4:]).expanduser()
        return path if path.is_absolute() else repo_root / path
    return None


def _read_payload_source(source: str, repo_root: Path) -> pd.DataFrame:
    path = payload_source_path(source, repo_root)
    if path is not None:
        if not path.is_file():
            raise ValueError(f"data.source {source!r}: {path} does not exist")
        frame = pd.read_csv(path)
        if "text" not in frame.columns:
            raise ValueError(f"{path}: no 'text' column (columns: {', '.join(frame.columns)})")
        return frame
    if source.startswith("hf:"):
        return _read_hf_dataset(source[3:])
    raise ValueError(f"data.source {source!r}: use bundled, csv:<path> or hf:<dataset id>")


def _read_hf_dataset(dataset_id: str) -> pd.DataFrame:
    """A Hugging Face dataset's train split (cached or downloaded), with a `text` and, where
    there is one, a string `label` column (e.g. `sentiment` of Sp1786/...)."""
    reachable, why = hub_reachable()
    try:
        from huggingface_hub import snapshot_download

        folder = Path(
            snapshot_download(
                dataset_id,
                repo_type="dataset",
                local_files_only=not reachable,
                allow_patterns=["*.csv", "*.parquet", "*.jsonl", "*.json"],
            )
        )
    except Exception as error:  # noqa: BLE001
        raise ValueError(
            f"data.source hf:{dataset_id}: not in the local cache and the hub cannot provide "
            f"it ({why}; {type(error).__name__}: {error})"
        ) from None
    candidates = sorted(p for p in folder.rglob("*") if p.suffix in (".csv", ".parquet", ".jsonl"))
    train = [p for p in candidates if "train" in p.name] or candidates
    if not train:
        raise ValueError(f"data.source hf:{dataset_id}: no csv/parquet/jsonl files")
    readers = {
        ".csv": pd.read_csv,
        ".parquet": pd.read_parquet,
        ".jsonl": lambda p: pd.read_json(p, lines=True),
    }
    frame = pd.concat([readers[p.suffix](p) for p in train], ignore_index=True)
    if "text" not in frame.columns:
        raise ValueError(f"data.source hf:{dataset_id}: no 'text' column")
    for column in ("sentiment", "label"):
        if column in frame.columns and frame[column].dtype == object:
            return frame.assign(label=frame[column])[["text", "label"]]
    return frame[["text"]]


def token_lengths(tokenizer_json: str | Path, texts: Sequence[str], max_length: int) -> np.ndarray:
    """Tokens per text (special tokens included, before truncation)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_json))
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return np.array([len(e.ids) for e in tokenizer.encode_batch(list(texts))], dtype=np.int64)


def token_length_summary(lengths: np.ndarray, max_length: int) -> dict[str, Any]:
    return {
        "n_texts": int(lengths.size),
        "mean_tokens": float(lengths.mean()),
        "std_tokens": float(lengths.std()),
        "min_tokens": int(lengths.min()),
        "p50_tokens": float(np.percentile(lengths, 50)),
        "p90_tokens": float(np.percentile(lengths, 90)),
        "p99_tokens": float(np.percentile(lengths, 99)),
        "max_tokens": int(lengths.max()),
        "max_length": int(max_length),
        "n_truncated": int((lengths > max_length).sum()),
    }


# --------------------------------------------------------------------------- fidelity


def predict_payloads(classifier: Any, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """Probabilities for every text, in batches of similar length (less padding, same
    batches for every runtime), returned in the original order."""
    lengths = np.array([len(text) for text in texts])
    order = np.argsort(lengths, kind="stable")
    probabilities = np.zeros((len(texts), len(classifier.labels)), dtype=np.float64)
    for start in range(0, len(order), batch_size):
        index = order[start : start + batch_size]
        probabilities[index] = classifier.predict_proba([texts[i] for i in index])
    return probabilities


def fidelity_report(
    reference: np.ndarray,
    candidate: np.ndarray,
    labels: Sequence[str],
    *,
    true_labels: Sequence[str] | None = None,
    weights: str = "real",
) -> dict[str, Any]:
    """Agreement of `candidate` with `reference` probabilities (both (n, n_labels)); accuracy
    and macro-F1 of the candidate where payload labels exist and the weights are real."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    reference_labels = reference.argmax(axis=1)
    candidate_labels = candidate.argmax(axis=1)
    difference = np.abs(reference - candidate)
    top_two = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else None
    report: dict[str, Any] = {
        "n_payloads": int(reference.shape[0]),
        "label_agreement": float((reference_labels == candidate_labels).mean()),
        "n_disagreements": int((reference_labels != candidate_labels).sum()),
        "max_abs_prob_diff": float(difference.max()) if difference.size else 0.0,
        "mean_abs_prob_diff": float(difference.mean()) if difference.size else 0.0,
        "reference_label_counts": {
            label: int((reference_labels == index).sum()) for index, label in enumerate(labels)
        },
        "candidate_label_counts": {
            label: int((candidate_labels == index).sum()) for index, label in enumerate(labels)
        },
    }
    if top_two is not None:
        margins = top_two[:, 1] - top_two[:, 0]
        report["reference_top2_margin_p50"] = float(np.median(margins))
        report["reference_top2_margin_min"] = float(margins.min())
    report.update(_accuracy(candidate_labels, labels, true_labels, weights))
    return report


def _accuracy(
    predicted: np.ndarray, labels: Sequence[str], true_labels: Sequence[str] | None, weights: str
) -> dict[str, Any]:
    if weights != "real":
        return {
            "accuracy": None,
            "macro_f1": None,
            "accuracy_note": "synthetic weights: accuracy is meaningless",
        }
    if true_labels is None or not any(str(label).strip() for label in true_labels):
        return {"accuracy": None, "macro_f1": None, "accuracy_note": "payloads carry no labels"}
    index = {label.lower(): i for i, label in enumerate(labels)}
    truth = np.array([index.get(str(label).strip().lower(), -1) for label in true_labels])
    known = truth >= 0
    if not known.any():
        return {
            "accuracy": None,
            "macro_f1": None,
            "accuracy_note": "payload labels do not match the model's labels",
        }
    truth, predicted = truth[known], predicted[known]
    f1s = []
    for i in range(len(labels)):
        tp = int(((predicted == i) & (truth == i)).sum())
        fp = int(((predicted == i) & (truth != i)).sum())
        fn = int(((predicted != i) & (truth == i)).sum())
        f1s.append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0)
    return {
        "accuracy": float((predicted == truth).mean()),
        "macro_f1": float(np.mean(f1s)),
        "n_labelled": int(known.sum()),
    }


def check_fidelity(report: dict[str, Any], runtime: str, min_label_agreement: float) -> None:
    """The gate: raise FidelityError when a runtime agrees with pytorch fp32 too rarely."""
    agreement = report["label_agreement"]
    if agreement < min_label_agreement:
        raise FidelityError(
            f"fidelity gate failed: runtime {runtime} agrees with pytorch fp32 on "
            f"{agreement:.2%} of {report['n_payloads']} payloads "
            f"({report['n_disagreements']} disagreements), below "
            f"model.fidelity.min_label_agreement = {min_label_agreement:.2%}; "
            f"max |dp| = {report['max_abs_prob_diff']:.4f}. Do not serve this runtime."
        )


# --------------------------------------------------------------------------- in-process bench


def bench_thread_counts(n_cores: int) -> list[int]:
    """1, 2, 4, ... up to the server's cores, and the core count itself."""
    counts = {1, n_cores}
    count = 2
    while count < n_cores:
        counts.add(count)
        count *= 2
    return sorted(counts)


def inprocess_bench(
    runtime_dir: str | Path,
    texts: Sequence[str],
    *,
    batch_sizes: Sequence[int],
    cpus: Sequence[int],
    thread_counts: Sequence[int] | None = None,
    warmup_batches: int = 3,
    min_batches: int = 10,
    min_duration_s: float = 3.0,
) -> list[dict[str, Any]]:
    """Latency per batch and sequences/s of one runtime, pinned to `cpus`.

    Batches take consecutive payloads in payload order (wrapping around), so every runtime
    sees the same batches; each batch's time includes tokenization, as in the service. A cell
    runs until it has `min_batches` batches and `min_duration_s` seconds, after
    `warmup_batches` untimed ones.
    """
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))
    thread_counts = list(thread_counts or bench_thread_counts(len(cpus)))
    provenance = read_provenance(runtime_dir)
    rows = []
    for threads in thread_counts:
        classifier = load_runtime(runtime_dir, threads=threads)
        for batch_size in batch_sizes:
            position = 0

            def next_batch(size: int = batch_size) -> list[str]:
                nonlocal position
                batch = [texts[(position + i) % len(texts)] for i in range(size)]
                position = (position + size) % len(texts)
                return batch

            for _ in range(warmup_batches):
                classifier.predict_proba(next_batch())
            latencies_s = []
            padded_tokens = []
            started = time.perf_counter()
            while len(latencies_s) < min_batches or time.perf_counter() - started < min_duration_s:
                batch = next_batch()
                t0 = time.perf_counter()
                classifier.predict_proba(batch)
                latencies_s.append(time.perf_counter() - t0)
                padded_tokens.append(len(batch) * classifier.encode(batch)[0].shape[1])
            latencies_ms = np.array(latencies_s) * 1000.0
            rows.append(
                {
                    "model": provenance.get("model_name"),
                    "weights": provenance.get("weights"),
                    "runtime": provenance["runtime"],
                    "batch_size": batch_size,
                    "threads": threads,
                    "cpus": " ".join(str(cpu) for cpu in sorted(cpus)),
                    "n_batches": len(latencies_ms),
                    "median_ms": float(np.median(latencies_ms)),
                    "p99_ms": float(np.percentile(latencies_ms, 99)),
                    "mean_ms": float(latencies_ms.mean()),
                    "min_ms": float(latencies_ms.min()),
                    "sequences_per_s": float(batch_size * len(latencies_s) / sum(latencies_s)),
                    "mean_padded_tokens_per_batch": float(np.mean(padded_tokens)),
                }
            )
            logger.info("%s", rows[-1])
        del classifier
    return rows


def resolution_dict(resolution: Resolution) -> dict[str, Any]:
    return asdict(resolution)


# --------------------------------------------------------------------------- workflow steps
# One function per workflow rule: read files, call the logic above, write files.


def build_runtime(
    runtime: str,
    out_dir: str | Path,
    *,
    model_config: dict[str, Any] | None = None,
    source_dir: str | Path | None = None,
    corpus_path: str | Path = BUNDLED_CORPUS,
    expected_name: str | None = None,
) -> dict[str, Any]:
    """Build one runtime directory: `pytorch` from the model config, the others from
    `source_dir` (onnx from pytorch, onnx-int8 from onnx, the CUDA fp16 ones from pytorch or
    onnx)."""
    model_config = model_config or {}
    if runtime == "pytorch":
        return prepare_pytorch(
            model_config, out_dir, corpus_path=corpus_path, expected_name=expected_name
        )
    if source_dir is None:
        raise ValueError(f"runtime {runtime} is built from another runtime: give source_dir")
    if runtime == "onnx":
        return export_onnx(source_dir, out_dir)
    if runtime == "onnx-int8":
        quantization = model_config.get("quantization") or {}
        isa = quantization.get("isa", "auto")
        return quantize_onnx(
            source_dir,
            out_dir,
            isa=None if isa == "auto" else isa,
            per_channel=bool(quantization.get("per_channel", True)),
        )
    return convert_fp16(source_dir, out_dir, runtime)


def write_payloads(data_config: dict[str, Any], out_csv: str | Path) -> pd.DataFrame:
    """The payload set of `data:` as CSV (id, text, label)."""
    payloads = load_payloads(
        data_config.get("source", "bundled"),
        int(data_config.get("n_requests", 1000)),
        int(data_config.get("seed", 1)),
    )
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    payloads.to_csv(out_csv, index=False)
    logger.info("%d payloads from %s -> %s", len(payloads), data_config.get("source"), out_csv)
    return payloads


def read_payloads(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"id": str, "text": str, "label": str}, keep_default_na=False)
    missing = {"id", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    if "label" not in frame.columns:
        frame["label"] = ""
    return frame


def write_token_lengths(
    payloads_csv: str | Path, runtime_dir: str | Path, out_csv: str | Path, out_json: str | Path
) -> dict[str, Any]:
    """Token length of every payload under the model's tokenizer, and a summary."""
    payloads = read_payloads(payloads_csv)
    provenance = read_provenance(runtime_dir)
    max_length = int(provenance["max_length"])
    lengths = token_lengths(
        Path(runtime_dir) / FILES_DIR / TOKENIZER_FILE, payloads["text"].tolist(), max_length
    )
    table = pd.DataFrame(
        {"id": payloads["id"], "n_tokens": lengths, "truncated": lengths > max_length}
    )
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False)
    summary = {
        **token_length_summary(lengths, max_length),
        "model_name": provenance.get("model_name"),
        "weights": provenance.get("weights"),
        "tokenizer_sha256": provenance["files"][TOKENIZER_FILE]["sha256"],
        "payloads_sha256": file_sha256(Path(payloads_csv)),
    }
    write_json(out_json, summary)
    return summary


def write_predictions(
    runtime_dir: str | Path, payloads_csv: str | Path, out_csv: str | Path, threads: int = 1
) -> np.ndarray:
    """Probabilities of every payload under one runtime (columns prob_<label>, predicted)."""
    payloads = read_payloads(payloads_csv)
    classifier = load_runtime(runtime_dir, threads=threads)
    started = time.perf_counter()
    probabilities = predict_payloads(classifier, payloads["text"].tolist())
    logger.info(
        "%s: %d payloads in %.1f s",
        classifier.runtime,
        len(payloads),
        time.perf_counter() - started,
    )
    table = pd.DataFrame(probabilities, columns=[f"prob_{label}" for label in classifier.labels])
    table.insert(0, "id", payloads["id"])
    table["predicted"] = [classifier.labels[i] for i in probabilities.argmax(axis=1)]
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, float_format="%.8g")
    return probabilities


def _read_probabilities(path: str | Path, labels: Sequence[str]) -> tuple[pd.Series, np.ndarray]:
    frame = pd.read_csv(path, dtype={"id": str})
    return frame["id"], frame[[f"prob_{label}" for label in labels]].to_numpy(dtype=np.float64)


def write_fidelity(
    runtime_dir: str | Path,
    reference_dir: str | Path,
    candidate_csv: str | Path,
    reference_csv: str | Path,
    payloads_csv: str | Path,
    out_json: str | Path,
    min_label_agreement: float,
) -> dict[str, Any]:
    """fidelity.json of a runtime against pytorch fp32; raises FidelityError (after writing
    the figures next to it as fidelity.failed.json) when the gate fails."""
    provenance = read_provenance(runtime_dir)
    reference_provenance = read_provenance(reference_dir)
    labels = list(provenance["labels"])
    if labels != list(reference_provenance["labels"]):
        raise FidelityError(
            f"labels differ: {provenance['runtime']} {labels}, pytorch "
            f"{reference_provenance['labels']}"
        )
    reference_ids, reference = _read_probabilities(reference_csv, labels)
    candidate_ids, candidate = _read_probabilities(candidate_csv, labels)
    if not reference_ids.equals(candidate_ids):
        raise FidelityError(f"{candidate_csv} and {reference_csv} cover different payloads")
    payloads = read_payloads(payloads_csv)
    report = fidelity_report(
        reference,
        candidate,
        labels,
        true_labels=payloads["label"].tolist(),
        weights=provenance.get("weights", "real"),
    )
    disagree = reference.argmax(axis=1) != candidate.argmax(axis=1)
    if disagree.any():
        top_two = np.sort(reference[disagree], axis=1)[:, -2:]
        report["disagreement_reference_margin_max"] = float((top_two[:, 1] - top_two[:, 0]).max())
        report["disagreement_ids"] = reference_ids[disagree].tolist()[:50]
    report.update(
        {
            "runtime": provenance["runtime"],
            "reference_runtime": reference_provenance["runtime"],
            "model_name": provenance.get("model_name"),
            "weights": provenance.get("weights"),
            "min_label_agreement": min_label_agreement,
            "passed": report["label_agreement"] >= min_label_agreement,
        }
    )
    out_json = Path(out_json)
    failed_copy = out_json.with_name("fidelity.failed.json")
    failed_copy.unlink(missing_ok=True)
    if not report["passed"]:
        write_json(failed_copy, report)
        check_fidelity(report, provenance["runtime"], min_label_agreement)
    write_json(out_json, report)
    return report


def write_inprocess_bench(
    runtime_dir: str | Path,
    payloads_csv: str | Path,
    out_csv: str | Path,
    *,
    bench_config: dict[str, Any],
    cpus: Sequence[int],
) -> pd.DataFrame:
    """inprocess_bench.csv of one runtime (see `inprocess_bench`)."""
    texts = read_payloads(payloads_csv)["text"].tolist()
    rows = inprocess_bench(
        runtime_dir,
        texts,
        batch_sizes=bench_config.get("batch_sizes", [1, 4, 8, 16, 32]),
        cpus=cpus,
        warmup_batches=int(bench_config.get("warmup_batches", 3)),
        min_batches=int(bench_config.get("min_batches", 10)),
        min_duration_s=float(bench_config.get("min_duration_s", 3.0)),
    )
    table = pd.DataFrame(rows)
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_csv, index=False, float_format="%.6g")
    return table
