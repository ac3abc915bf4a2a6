"""Runtime directories (`provenance.json` + `files/`) that servebench.model.runtime loads:
`prepare_pytorch`, `export_onnx`, `quantize_onnx` (of the plain export: ORTQuantizer fails on
an O2-optimized graph), `convert_fp16`, and `build_runtime`, the model stage's entry.

Heavy libraries (torch, transformers, optimum) are imported inside the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from servebench.config import BUNDLED_CORPUS
from servebench.model.resolve import (
    ROBERTA_BASE,
    ModelUnavailableError,
    Resolution,
    resolve_model,
    synthetic_banner,
)
from servebench.model.runtime import (
    CUDA_RUNTIMES,
    FILES_DIR,
    PROVENANCE_FILE,
    TOKENIZER_FILE,
    read_provenance,
)
from servebench.model.synthetic import (
    build_synthetic_model,
    fit_synthetic_head,
    train_tokenizer,
)
from servebench.payloads import read_texts
from servebench.provenance import REPO_ROOT, cpu_info, environment, write_json

logger = logging.getLogger("servebench.model")


TOKENIZER_FILES = (
    TOKENIZER_FILE,
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.json",
    "merges.txt",
)


QUANTIZATION_ISAS = ("avx512_vnni", "avx2", "arm64")


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
        [sys.executable, "-m", "servebench.model.runtime", str(runtime_dir)],
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
        texts = read_texts(corpus_path)
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
        quantization = model_config["quantization"]
        isa = quantization["isa"]
        return quantize_onnx(
            source_dir,
            out_dir,
            isa=None if isa == "auto" else isa,
            per_channel=bool(quantization["per_channel"]),
        )
    return convert_fp16(source_dir, out_dir, runtime)
