"""Load a prepared model runtime and classify texts with it.

A runtime directory (made by `servebench.model`, e.g. `results/model/<model>/onnx-int8/`) holds
`provenance.json`, which names the runtime, and a `files/` folder with the model and its
tokenizer. `load_runtime(path)` needs nothing else, so the BentoML service, the fidelity check
and the in-process benchmark all load a runtime the same way:

    classifier = load_runtime("results/model/synthetic-roberta-base/onnx-int8", threads=1)
    classifier.classify(["what a lovely day"])
    # [{"label": "positive", "score": 0.91, "scores": {"negative": 0.03, ...}}]

Tokenization uses the `tokenizers` library directly on `tokenizer.json` (the same for every
runtime), so the ONNX runtimes import neither torch nor transformers.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

PROVENANCE_FILE = "provenance.json"
FILES_DIR = "files"
TOKENIZER_FILE = "tokenizer.json"

CPU_RUNTIMES = ("pytorch", "onnx", "onnx-int8")
CUDA_RUNTIMES = ("pytorch-cuda-fp16", "onnx-cuda-fp16")
RUNTIMES = CPU_RUNTIMES + CUDA_RUNTIMES
ONNX_RUNTIMES = ("onnx", "onnx-int8", "onnx-cuda-fp16")
TORCH_RUNTIMES = ("pytorch", "pytorch-cuda-fp16")


class RuntimeLoadError(RuntimeError):
    """A runtime directory is missing, incomplete, or cannot run on this machine."""


def read_provenance(runtime_dir: str | Path) -> dict[str, Any]:
    """The `provenance.json` of a runtime directory (raises RuntimeLoadError when absent)."""
    path = Path(runtime_dir) / PROVENANCE_FILE
    if not path.is_file():
        raise RuntimeLoadError(
            f"{runtime_dir}: not a prepared runtime directory (no {PROVENANCE_FILE}); "
            "prepare it with the workflow's model rules"
        )
    provenance = json.loads(path.read_text(encoding="utf-8"))
    if provenance.get("runtime") not in RUNTIMES:
        raise RuntimeLoadError(
            f"{path}: unknown runtime {provenance.get('runtime')!r} (known: {', '.join(RUNTIMES)})"
        )
    return provenance


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exponentials = np.exp(shifted)
    return exponentials / exponentials.sum(axis=-1, keepdims=True)


class Classifier:
    """A text classifier over one prepared runtime.

    `labels` are the class names in output order; `predict_proba` returns softmax
    probabilities of shape (n, len(labels)); `classify` returns the HTTP contract's dicts.
    Texts are padded to the batch's longest text and truncated at the model's max length.
    """

    def __init__(
        self, runtime_dir: Path, provenance: dict[str, Any], threads: int | None = None
    ) -> None:
        self.runtime_dir = runtime_dir
        self.provenance = provenance
        self.runtime: str = provenance["runtime"]
        self.files_dir = runtime_dir / provenance.get("files_dir", FILES_DIR)
        self.labels: list[str] = list(provenance["labels"])
        self.max_length: int = int(provenance["max_length"])
        self.threads = threads
        self.tokenizer = _load_tokenizer(
            self.files_dir / TOKENIZER_FILE, self.max_length, int(provenance["pad_token_id"])
        )

    def encode(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Token ids and attention mask, int64 arrays of shape (n, longest text in tokens)."""
        if isinstance(texts, str):
            raise TypeError("texts must be a list of strings, not a single string")
        for index, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{index}] is {type(text).__name__}, not str")
        encodings = self.tokenizer.encode_batch(list(texts))
        input_ids = np.array([encoding.ids for encoding in encodings], dtype=np.int64)
        attention_mask = np.array(
            [encoding.attention_mask for encoding in encodings], dtype=np.int64
        )
        return input_ids, attention_mask

    def predict_proba(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            self.encode(texts)  # type checks only
            return np.zeros((0, len(self.labels)), dtype=np.float64)
        input_ids, attention_mask = self.encode(texts)
        return softmax(self._logits(input_ids, attention_mask))

    def classify(self, texts: Sequence[str]) -> list[dict[str, Any]]:
        probabilities = self.predict_proba(texts)
        results = []
        for row in probabilities:
            best = int(row.argmax())
            results.append(
                {
                    "label": self.labels[best],
                    "score": float(row[best]),
                    "scores": {label: float(p) for label, p in zip(self.labels, row, strict=True)},
                }
            )
        return results

    def _logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        raise NotImplementedError


class TorchClassifier(Classifier):
    """`pytorch` (fp32 on CPU) and `pytorch-cuda-fp16`."""

    def __init__(
        self, runtime_dir: Path, provenance: dict[str, Any], threads: int | None = None
    ) -> None:
        super().__init__(runtime_dir, provenance, threads)
        import torch
        from transformers import AutoModelForSequenceClassification

        self._torch = torch
        if threads is not None:
            torch.set_num_threads(threads)
            try:
                torch.set_num_interop_threads(1)
            except RuntimeError:  # only settable once per process, before parallel work
                pass
        if self.runtime == "pytorch-cuda-fp16":
            if not torch.cuda.is_available():
                raise RuntimeLoadError(f"{runtime_dir}: runtime {self.runtime} needs a CUDA device")
            self.device = torch.device("cuda")
            dtype = torch.float16
        else:
            self.device = torch.device("cpu")
            dtype = torch.float32
        model = AutoModelForSequenceClassification.from_pretrained(self.files_dir, dtype=dtype)
        self.model = model.to(self.device).eval()

    def _logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            logits = self.model(
                input_ids=torch.from_numpy(input_ids).to(self.device),
                attention_mask=torch.from_numpy(attention_mask).to(self.device),
            ).logits
        return logits.float().cpu().numpy()


class OnnxClassifier(Classifier):
    """`onnx`, `onnx-int8` (CPU execution provider) and `onnx-cuda-fp16` (CUDA provider)."""

    def __init__(
        self, runtime_dir: Path, provenance: dict[str, Any], threads: int | None = None
    ) -> None:
        super().__init__(runtime_dir, provenance, threads)
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # Left at its default (0), ONNX Runtime pins its pool threads to every physical core,
        # escaping the process's CPU affinity (a server under `taskset -c 0` ran on 2 cores):
        # the default is one thread per core this process may run on.
        options.intra_op_num_threads = threads or len(os.sched_getaffinity(0))
        options.inter_op_num_threads = 1
        if self.runtime == "onnx-cuda-fp16":
            if "CUDAExecutionProvider" not in ort.get_available_providers():
                raise RuntimeLoadError(
                    f"{runtime_dir}: runtime {self.runtime} needs onnxruntime-gpu with a CUDA "
                    f"device (available providers: {', '.join(ort.get_available_providers())})"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        model_path = self.files_dir / provenance["model_file"]
        if not model_path.is_file():
            raise RuntimeLoadError(f"{model_path}: model file missing")
        self.session = ort.InferenceSession(str(model_path), options, providers=providers)
        self.input_names = [node.name for node in self.session.get_inputs()]
        self.output_name = self.session.get_outputs()[0].name

    def _logits(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {}
        for name in self.input_names:
            if name == "input_ids":
                feeds[name] = input_ids
            elif name == "attention_mask":
                feeds[name] = attention_mask
            elif name == "token_type_ids":
                feeds[name] = np.zeros_like(input_ids)
            else:
                raise RuntimeLoadError(f"ONNX model input {name!r} is not supported")
        return np.asarray(self.session.run([self.output_name], feeds)[0])


def _load_tokenizer(path: Path, max_length: int, pad_token_id: int) -> Any:
    from tokenizers import Tokenizer

    if not path.is_file():
        raise RuntimeLoadError(f"{path}: tokenizer missing")
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=max_length)
    tokenizer.enable_padding(pad_id=pad_token_id, pad_token=tokenizer.id_to_token(pad_token_id))
    return tokenizer


def load_runtime(runtime_dir: str | Path, *, threads: int | None = None) -> Classifier:
    """Load a prepared runtime directory; `threads` sets the runtime's intra-op threads
    (torch.set_num_threads / ORT intra_op_num_threads, inter-op 1); None keeps the default."""
    runtime_dir = Path(runtime_dir)
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    provenance = read_provenance(runtime_dir)
    if provenance["runtime"] in TORCH_RUNTIMES:
        return TorchClassifier(runtime_dir, provenance, threads)
    return OnnxClassifier(runtime_dir, provenance, threads)


def measure_load(runtime_dir: str | Path, threads: int | None = 1) -> dict[str, Any]:
    """Load a runtime in this process and report memory and time; run it in a fresh
    subprocess (see `servebench.model.measure_load_subprocess`) for a clean peak RSS."""
    import time

    import psutil

    process = psutil.Process()
    rss_before = process.memory_info().rss
    started = time.perf_counter()
    classifier = load_runtime(runtime_dir, threads=threads)
    load_s = time.perf_counter() - started
    rss_loaded = process.memory_info().rss
    classifier.predict_proba(["warm-up text for the load measurement"])
    rss_after_first = process.memory_info().rss
    return {
        "load_time_s": round(load_s, 4),
        "rss_before_load_bytes": rss_before,
        "rss_after_load_bytes": rss_loaded,
        "rss_after_first_prediction_bytes": rss_after_first,
        "peak_rss_bytes": _peak_rss_bytes(),
        "load_rss_increase_bytes": rss_after_first - rss_before,
        "pid": os.getpid(),
    }


def _peak_rss_bytes() -> int:
    """High-water mark of this process's RSS. VmHWM, not ru_maxrss: Linux carries ru_maxrss
    over an exec, so a subprocess of a big parent would report the parent's peak."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


if __name__ == "__main__":  # `python -m servebench.model.runtime DIR`: print the load measurement
    import sys

    print(json.dumps(measure_load(sys.argv[1])))
