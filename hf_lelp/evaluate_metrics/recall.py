"""Recall of class-id predictions, as an `evaluate` metric that loads offline (see _classification.py)."""

from __future__ import annotations

import evaluate

from ._classification import INPUTS, features, score


class Recall(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description="Recall of single-label classification (hf_lelp's offline implementation, numpy).",
            citation="",
            inputs_description=INPUTS + 'Returns: {"recall": float, or a list of float when average=None}',
            features=features(),
            format="numpy",
        )

    def _compute(self, predictions, references, **kwargs):
        return {"recall": score("recall", predictions, references, **kwargs)}
