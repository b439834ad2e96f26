"""Matthews correlation of class-id predictions (multi-class), as an `evaluate` metric that loads offline."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

CLASS_ID = datasets.Value("int64")
INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    sample_weight (list of float, optional): a weight per example.
Returns: {"matthews_correlation": float} in [-1, 1]; 0 when it is undefined (one class only), nan with no example.
"""


class MatthewsCorrelation(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Matthews correlation coefficient, multi-class (hf_lelp's offline implementation, numpy).",
            citation="",
            inputs_description=INPUTS,
            features=datasets.Features({"predictions": CLASS_ID, "references": CLASS_ID}),
            format="numpy",
        )

    def _compute(self, predictions, references, sample_weight=None):
        predictions, references = np.asarray(predictions), np.asarray(references)
        if not len(references):
            return {"matthews_correlation": float("nan")}
        weight = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        labels = np.union1d(references, predictions)
        confusion = np.zeros((len(labels), len(labels)))
        np.add.at(confusion, (np.searchsorted(labels, references), np.searchsorted(labels, predictions)), weight)
        # Gorodkin's multi-class form (what scikit-learn computes): covariances from the confusion matrix.
        true, predicted, correct, total = confusion.sum(1), confusion.sum(0), np.trace(confusion), confusion.sum()
        covariance = correct * total - true @ predicted
        denominator = np.sqrt((total**2 - predicted @ predicted) * (total**2 - true @ true))
        return {"matthews_correlation": float(covariance / denominator) if denominator > 0 else 0.0}
