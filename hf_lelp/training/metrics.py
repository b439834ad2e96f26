"""Metrics through `evaluate`, offline: accuracy and macro-F1 always, plus any named metric on request.

hf_lelp ships its own metric scripts (hf_lelp/evaluate_metrics/: accuracy, f1, precision, recall,
matthews_correlation) and loads them by path with `evaluate.load`, so that they go through evaluate's own machinery
(feature validation, add_batch/compute) without the Hub. Any other name goes to `evaluate.load` as it is (the Hub,
or evaluate's module cache when offline); a path to a local metric script works too. A metric that cannot be
loaded, or cannot score class ids, is an error before training starts, never a silent skip.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import evaluate
import numpy as np
from huggingface_hub import constants as hub_constants

from hf_lelp.base.errors import UserError
from hf_lelp.evaluate_metrics import SHIPPED_METRICS, metric_script

# f1/precision/recall default to average="binary" (ours as the Hub's), which refuses more than two classes.
MULTICLASS_KWARGS = {name: {"average": "macro"} for name in ("f1", "precision", "recall")}


def _is_local_script(name: str) -> bool:
    """What evaluate itself loads from disk: a script path, or a folder holding a script of the folder's name."""
    return os.path.isfile(name) or os.path.isfile(os.path.join(name, Path(name).name + ".py"))


def load_metric(name: str) -> evaluate.EvaluationModule:
    """An `evaluate` metric by name: a local script path first, then hf_lelp's shipped scripts, then evaluate's
    own resolution (Hub or module cache); an error that says how to make the metric available when all fail."""
    if hub_constants.HF_HUB_OFFLINE:  # evaluate has its own switch: without it, offline loads still try the network
        evaluate.config.HF_EVALUATE_OFFLINE = True
    # keep_in_memory: predictions stay in RAM, not in an arrow file + lock under HF_METRICS_CACHE shared by ranks.
    if name in SHIPPED_METRICS and not _is_local_script(name):
        return evaluate.load(metric_script(name), keep_in_memory=True)  # failing here is a bug: keep the traceback
    try:
        return evaluate.load(name, keep_in_memory=True)
    except Exception as error:  # offline: FileNotFoundError; a script's missing package: ImportError
        raise UserError(
            f"Metric {name!r} could not be loaded ({type(error).__name__}: {error}). hf_lelp ships "
            f"{', '.join(SHIPPED_METRICS)}, which work offline; any other `evaluate` metric loads from the Hugging "
            "Face Hub, or offline from evaluate's module cache (HF_MODULES_CACHE) once it has been loaded with "
            "network access; or pass the path of a local metric script (my_metric.py, or a folder holding "
            "my_metric.py) in place of the name."
        ) from error


def _check_scores_class_ids(name: str, metric: evaluate.EvaluationModule, kwargs: dict, num_labels: int) -> None:
    """Compute once on a few class ids now, so that a metric that needs other inputs fails before training."""
    ids = np.arange(max(num_labels, 2))
    try:
        metric.compute(predictions=ids, references=ids, **kwargs)
    except Exception as error:
        raise UserError(
            f"Metric {name!r} cannot score class-id predictions against labels ({type(error).__name__}: {error}). "
            "--extra_metrics takes metrics with `predictions` and `references` inputs (e.g. precision, recall)."
        ) from error


def build_compute_metrics(num_labels: int, extra_metrics: Iterable[str] | None = ()):
    """`compute_metrics` for the Trainer: `accuracy`, `macro_f1`, plus the keys that each extra metric returns."""
    accuracy, f1 = load_metric("accuracy"), load_metric("f1")
    extras = []
    for name in extra_metrics or ():
        metric = load_metric(name)
        kwargs = MULTICLASS_KWARGS.get(name, {}) if num_labels > 2 else {}
        _check_scores_class_ids(name, metric, kwargs, num_labels)
        extras.append((metric, kwargs))

    def compute_metrics(eval_pred) -> dict[str, float]:
        logits, labels = eval_pred.predictions, eval_pred.label_ids
        logits = logits[0] if isinstance(logits, tuple) else logits
        predictions = np.asarray(logits).argmax(axis=-1)
        labels = np.asarray(labels)
        keep = labels >= 0  # transfer examples without a label
        predictions, labels = predictions[keep], labels[keep]
        results = {
            "accuracy": accuracy.compute(predictions=predictions, references=labels)["accuracy"],
            "macro_f1": f1.compute(predictions=predictions, references=labels, average="macro")["f1"],
        }
        for metric, kwargs in extras:
            results.update(metric.compute(predictions=predictions, references=labels, **kwargs))
        return results

    return compute_metrics
