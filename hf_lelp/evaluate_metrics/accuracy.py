"""Accuracy of class-id predictions, as an `evaluate` metric that loads offline (numpy only)."""

from __future__ import annotations

import datasets
import evaluate
import numpy as np

CLASS_ID = datasets.Value("int64")
INPUTS = """
Args:
    predictions (list of int): predicted class ids.
    references (list of int): true class ids.
    normalize (bool): the fraction of correct predictions (default) or, when False, their (weighted) number.
    sample_weight (list of float, optional): a weight per example.
Returns: {"accuracy": float}, nan when there is no example.
"""


class Accuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Accuracy of single-label classification (hf_lelp's offline implementation, numpy).",
            citation="",
            inputs_description=INPUTS,
            features=datasets.Features({"predictions": CLASS_ID, "references": CLASS_ID}),
            format="numpy",
        )

    def _compute(self, predictions, references, normalize=True, sample_weight=None):
        weight = np.ones(len(references)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        correct = float(weight[np.asarray(predictions) == np.asarray(references)].sum())
        if not normalize:
            return {"accuracy": correct}
        return {"accuracy": float(correct / weight.sum()) if weight.sum() > 0 else float("nan")}
