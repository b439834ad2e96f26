"""Accuracy and macro-F1 without network access; `evaluate` metrics added on request when they load."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def accuracy(predictions: np.ndarray, labels: np.ndarray) -> float:
    return float((predictions == labels).mean()) if len(labels) else float("nan")


def macro_f1(predictions: np.ndarray, labels: np.ndarray, num_labels: int) -> float:
    """Mean over classes present in labels or predictions of 2·TP / (2·TP + FP + FN)."""
    scores = []
    for c in range(num_labels):
        tp = np.sum((predictions == c) & (labels == c))
        fp = np.sum((predictions == c) & (labels != c))
        fn = np.sum((predictions != c) & (labels == c))
        if tp + fp + fn:
            scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def build_compute_metrics(num_labels: int, extra_metrics: list[str] | None = None):
    """`compute_metrics` for the Trainer: accuracy, macro_f1, plus any `evaluate` metric that loads."""
    loaded = []
    for name in extra_metrics or []:
        try:
            import evaluate

            loaded.append(evaluate.load(name))
        except Exception as error:  # offline or not installed: say so once and carry on with the built-ins
            logger.warning(
                "evaluate metric '%s' unavailable (%s); using built-in accuracy/macro_f1 only.", name, error
            )

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.asarray(logits).argmax(axis=-1)
        labels = np.asarray(labels)
        keep = labels >= 0
        predictions, labels = predictions[keep], labels[keep]
        results = {"accuracy": accuracy(predictions, labels), "macro_f1": macro_f1(predictions, labels, num_labels)}
        for metric in loaded:
            results.update(metric.compute(predictions=predictions, references=labels))
        return results

    return compute_metrics
