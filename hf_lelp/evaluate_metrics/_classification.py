"""Per-class counts and their averages, shared by the precision, recall and f1 metric scripts (numpy only)."""

from __future__ import annotations

import datasets
import numpy as np

AVERAGES = ("binary", "micro", "macro", "weighted", None)
INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    labels (list of int, optional): the classes to score; default: those in references or predictions.
    pos_label (int): the class scored when average="binary" (default 1).
    average (str or None): "binary" (default; two classes at most), "micro", "macro", "weighted", or None for
        one score per class (a list).
    sample_weight (list of float, optional): a weight per example.
    zero_division (float or "warn"): the score of a class whose denominator is 0 ("warn" counts as 0).
"""


def class_counts(predictions, references, labels=None, sample_weight=None):
    """(tp, fp, fn, support) per class of `labels` (default: the classes in references or predictions)."""
    predictions, references = np.asarray(predictions), np.asarray(references)
    weight = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
    labels = np.union1d(references, predictions) if labels is None else np.asarray(labels)
    hit = predictions == references
    tp = np.array([weight[hit & (references == c)].sum() for c in labels], dtype=float)
    predicted = np.array([weight[predictions == c].sum() for c in labels], dtype=float)
    support = np.array([weight[references == c].sum() for c in labels], dtype=float)
    return tp, predicted - tp, support - tp, support


def score(
    kind, predictions, references, labels=None, pos_label=1, average="binary", sample_weight=None, zero_division=0.0
):
    """`kind` ("precision", "recall" or "f1") of single-label predictions, averaged as scikit-learn does."""
    if average not in AVERAGES:
        raise ValueError(f"average={average!r}: use one of {AVERAGES}.")
    if average == "binary":
        present = np.union1d(np.asarray(references), np.asarray(predictions))
        if len(present) > 2:
            raise ValueError(
                f"average='binary' scores one class of a two-class task, but there are {len(present)} classes: "
                "pass average='macro' (or 'micro', 'weighted', None)."
            )
        if len(present) == 2 and pos_label not in present:
            raise ValueError(f"pos_label={pos_label} is none of the two classes {present.tolist()}.")
        labels = [pos_label]
    tp, fp, fn, support = class_counts(predictions, references, labels, sample_weight)
    if average == "micro":
        tp, fp, fn = tp.sum(keepdims=True), fp.sum(keepdims=True), fn.sum(keepdims=True)
    terms = {"precision": (tp, tp + fp), "recall": (tp, tp + fn), "f1": (2 * tp, 2 * tp + fp + fn)}
    numerator, denominator = terms[kind]
    zero = 0.0 if zero_division == "warn" else float(zero_division)
    per_class = np.divide(numerator, denominator, out=np.full(len(tp), zero), where=denominator > 0)
    if average is None:
        return per_class.tolist()
    if average in ("binary", "micro"):
        return float(per_class[0])
    if average == "weighted":
        return float(np.average(per_class, weights=support)) if support.sum() > 0 else zero
    return float(per_class.mean()) if len(per_class) else float("nan")  # macro; nan when there is nothing to score


def features() -> datasets.Features:
    return datasets.Features({"predictions": datasets.Value("int64"), "references": datasets.Value("int64")})
