"""Token length of every payload under the model's tokenizer, and its summary."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.model.build import file_sha256
from servebench.model.runtime import (
    FILES_DIR,
    TOKENIZER_FILE,
    read_provenance,
)
from servebench.payloads import read_payloads
from servebench.provenance import write_json

logger = logging.getLogger("servebench.model")


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
