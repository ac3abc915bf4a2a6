"""The request texts (payloads): the fixed-seed subset of `data:` the load tests send, and the
one reader of a payload file (a CSV with a `text` column) that every part uses."""

from __future__ import annotations

import csv
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.config import payload_source_path
from servebench.model.resolve import hub_reachable
from servebench.provenance import REPO_ROOT

logger = logging.getLogger("servebench.payloads")


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


def write_payloads(data_config: dict[str, Any], out_csv: str | Path) -> pd.DataFrame:
    """The payload set of a checked `data:` section as CSV (id, text, label)."""
    payloads = load_payloads(
        data_config["source"], int(data_config["n_requests"]), int(data_config["seed"])
    )
    Path(out_csv).parent.mkdir(parents=True, exist_ok=True)
    payloads.to_csv(out_csv, index=False)
    logger.info("%d payloads from %s -> %s", len(payloads), data_config.get("source"), out_csv)
    return payloads


class PayloadError(ValueError):
    """A payload file that cannot be used: one readable line naming the file."""


def read_texts(path: str | Path) -> list[str]:
    """The non-blank texts of a CSV file's `text` column, in file order: what a load test sends
    and what the synthetic tokenizer is trained on."""
    path = Path(path)
    if not path.is_file():
        raise PayloadError(f"{path}: no such payload file")
    with path.open(encoding="utf-8", newline="") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames or "text" not in reader.fieldnames:
            raise PayloadError(f"{path}: needs a 'text' column (found {reader.fieldnames})")
        texts = [row["text"] for row in reader if (row["text"] or "").strip()]
    if not texts:
        raise PayloadError(f"{path}: no texts")
    return texts


def read_payloads(path: str | Path) -> pd.DataFrame:
    """The workflow's payloads.csv (id, text, label) as a table."""
    frame = pd.read_csv(path, dtype={"id": str, "text": str, "label": str}, keep_default_na=False)
    missing = {"id", "text"} - set(frame.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    if "label" not in frame.columns:
        frame["label"] = ""
    return frame
