"""Which model the config means: `model.local_dir` (a `save_pretrained` directory), the Hugging
Face cache, the hub (only when reachable: offline is detected fast, never by waiting on a
network timeout), and, only with `model.fallback: synthetic`, a synthetic model of the
configured architecture (RoBERTa-base by default) with seeded random weights.

Light on purpose: the workflow resolves the model at parse time to name results/model/<name>/.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

logger = logging.getLogger("servebench.model")


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


HUB_CHECK_TIMEOUT_S = 2.0


class ModelUnavailableError(RuntimeError):
    """The configured model cannot be found and the fallback does not allow a synthetic one."""


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
    """The synthetic architecture of a checked `model:` section (defaults: the schema's)."""
    return dict(model_config["synthetic"])


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
    model_id = model_config["id"]
    local_dir = model_config["local_dir"]
    fallback = model_config["fallback"]
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


def resolution_dict(resolution: Resolution) -> dict[str, Any]:
    return asdict(resolution)
