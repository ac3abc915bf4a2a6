"""Fidelity of a runtime against pytorch fp32: probabilities of every payload, agreement, and
the gate that fails the workflow below `model.fidelity.min_label_agreement`."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from servebench.model.runtime import (
    load_runtime,
    read_provenance,
)
from servebench.payloads import read_payloads
from servebench.provenance import write_json

logger = logging.getLogger("servebench.model")


class FidelityError(RuntimeError):
    """A runtime changes the model's answers more than the configured gate allows."""


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
    tie_margin: float = 0.0,
) -> dict[str, Any]:
    """Agreement of `candidate` with `reference` probabilities (both (n, n_labels)); accuracy
    and macro-F1 of the candidate where payload labels exist and the weights are real.

    A disagreement on a payload whose reference top-two probabilities differ by at most
    `tie_margin` is a tie, not an error: the two runtimes' arithmetic (kernels differ between
    CPUs) decides it. `decisive_agreement`, what the gate judges, is the agreement on the
    other payloads; `label_agreement` counts every payload."""
    if reference.shape != candidate.shape:
        raise ValueError(f"shapes differ: reference {reference.shape}, candidate {candidate.shape}")
    reference_labels = reference.argmax(axis=1)
    candidate_labels = candidate.argmax(axis=1)
    difference = np.abs(reference - candidate)
    top_two = np.sort(reference, axis=1)[:, -2:] if reference.shape[1] > 1 else None
    disagree = reference_labels != candidate_labels
    margins = top_two[:, 1] - top_two[:, 0] if top_two is not None else np.ones(len(disagree))
    ties = disagree & (margins <= tie_margin)
    decisive = int(len(disagree) - ties.sum())
    report: dict[str, Any] = {
        "n_payloads": int(reference.shape[0]),
        "label_agreement": float((~disagree).mean()) if len(disagree) else 1.0,
        "n_disagreements": int(disagree.sum()),
        "tie_margin": float(tie_margin),
        "n_ties": int(ties.sum()),
        "decisive_agreement": float((~disagree & ~ties).sum() / decisive) if decisive else 1.0,
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
    """The gate: raise FidelityError when a runtime agrees with pytorch fp32 too rarely on the
    payloads that are not ties."""
    agreement = report["decisive_agreement"]
    if agreement < min_label_agreement:
        raise FidelityError(
            f"fidelity gate failed: runtime {runtime} agrees with pytorch fp32 on "
            f"{agreement:.2%} of the {report['n_payloads'] - report['n_ties']} payloads that "
            f"are not ties ({report['n_disagreements'] - report['n_ties']} disagreements), below "
            f"model.fidelity.min_label_agreement = {min_label_agreement:.2%}; "
            f"max |dp| = {report['max_abs_prob_diff']:.4f}. Do not serve this runtime."
        )


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
    gate: dict[str, float],
) -> dict[str, Any]:
    """fidelity.json of a runtime against pytorch fp32; raises FidelityError (after writing
    the figures next to it as fidelity.failed.json) when the gate fails. `gate`:
    `model.fidelity` (min_label_agreement, tie_margin)."""
    min_label_agreement = float(gate["min_label_agreement"])
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
        tie_margin=float(gate["tie_margin"]),
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
            "passed": report["decisive_agreement"] >= min_label_agreement,
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
