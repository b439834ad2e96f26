"""Built-in metrics against hand-computed values; `evaluate` metrics used when they load, skipped when not."""

import sys
import types

import numpy as np
import pytest
from transformers import EvalPrediction

from hf_lelp.metrics import accuracy, build_compute_metrics, macro_f1


def test_accuracy_and_macro_f1_hand_computed():
    predictions, labels = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])
    assert accuracy(predictions, labels) == pytest.approx(0.6)
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp0 fn1 -> 0.8; class 2: tp0 fp1 fn0 -> 0
    assert macro_f1(predictions, labels, 3) == pytest.approx((0.5 + 0.8 + 0.0) / 3)


def test_compute_metrics_takes_argmax_and_ignores_unlabelled_rows():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    metrics = build_compute_metrics(2)(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, -1])))
    assert metrics["accuracy"] == pytest.approx(0.5)


def test_evaluate_metrics_are_added_when_they_load_and_skipped_when_not(monkeypatch, caplog):
    class FakeMetric:
        def compute(self, predictions, references):
            return {"matches": int((predictions == references).sum())}

    def load(name):
        if name == "offline_only":
            raise ConnectionError("Hub unreachable")
        return FakeMetric()

    monkeypatch.setitem(sys.modules, "evaluate", types.SimpleNamespace(load=load))
    compute = build_compute_metrics(2, ["matches", "offline_only"])
    metrics = compute(EvalPrediction(predictions=np.array([[1.0, 0.0], [1.0, 0.0]]), label_ids=np.array([0, 1])))
    assert metrics["matches"] == 1 and "accuracy" in metrics
    assert "offline_only" in caplog.text
