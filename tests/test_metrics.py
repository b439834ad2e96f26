"""Metrics through `evaluate` with hf_lelp's shipped metric scripts: hand-computed values, offline loading (no
network, no Hub), named extras, and a clear error for a metric that cannot be loaded or cannot score class ids."""

import json
import os
import socket
import subprocess
import sys
import time

import evaluate
import numpy as np
import pytest
from transformers import EvalPrediction

from hf_lelp.base.errors import UserError
from hf_lelp.evaluate_metrics import SHIPPED_METRICS
from hf_lelp.training.metrics import build_compute_metrics, load_metric

# class 0: tp1 fp1 fn1; class 1: tp2 fp0 fn1; class 2: tp0 fp1 fn0
PREDICTIONS, LABELS = np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0])


def one_hot(predictions: np.ndarray, num_labels: int = 3) -> np.ndarray:
    return np.eye(num_labels)[predictions]


def test_accuracy_and_macro_f1_hand_computed():
    metrics = build_compute_metrics(3)(EvalPrediction(predictions=one_hot(PREDICTIONS), label_ids=LABELS))
    assert metrics == pytest.approx({"accuracy": 0.6, "macro_f1": (0.5 + 0.8 + 0.0) / 3})


def test_compute_metrics_takes_argmax_and_ignores_unlabelled_rows():
    logits = np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    metrics = build_compute_metrics(2)(EvalPrediction(predictions=logits, label_ids=np.array([0, 0, -1])))
    assert metrics["accuracy"] == pytest.approx(0.5)
    unlabelled = build_compute_metrics(2)(EvalPrediction(predictions=logits, label_ids=np.array([-1, -1, -1])))
    assert np.isnan(unlabelled["accuracy"]) and np.isnan(unlabelled["macro_f1"])


@pytest.mark.parametrize("name", SHIPPED_METRICS)
def test_shipped_metrics_go_through_evaluate_machinery(name):
    metric = load_metric(name)
    # Loaded by evaluate.load from its module cache, like a Hub metric, not imported from hf_lelp.
    assert isinstance(metric, evaluate.Metric) and metric.name == name
    assert type(metric).__module__.startswith("evaluate_modules.metrics.")
    kwargs = {"average": "macro"} if name in ("f1", "precision", "recall") else {}
    whole = metric.compute(predictions=PREDICTIONS, references=LABELS, **kwargs)
    for start in range(0, len(LABELS), 2):  # the same in batches (add_batch, then compute)
        metric.add_batch(predictions=PREDICTIONS[start : start + 2], references=LABELS[start : start + 2])
    assert metric.compute(**kwargs) == pytest.approx(whole)
    with pytest.raises(ValueError):  # evaluate's feature validation: class ids are integers
        metric.compute(predictions=["a", "b"], references=[0, 1])


def test_extra_metrics_hand_computed_with_macro_average_for_many_classes():
    compute = build_compute_metrics(3, ["precision", "recall", "matthews_correlation", "f1"])
    metrics = compute(EvalPrediction(predictions=one_hot(PREDICTIONS), label_ids=LABELS))
    assert metrics["precision"] == pytest.approx((0.5 + 1.0 + 0.0) / 3)  # class 2 has no true example: 0
    assert metrics["recall"] == pytest.approx((0.5 + 2 / 3 + 0.0) / 3)
    assert metrics["f1"] == pytest.approx(metrics["macro_f1"])
    # confusion (true x predicted) [[1,0,1],[1,2,0],[0,0,0]]: (3·5 - t·p) / sqrt((25 - p·p)(25 - t·t))
    assert metrics["matthews_correlation"] == pytest.approx(5 / np.sqrt(16 * 12))
    binary = build_compute_metrics(2, ["f1"])(EvalPrediction(one_hot(np.array([1, 1, 0]), 2), np.array([1, 0, 0])))
    assert binary["f1"] == pytest.approx(2 / 3)  # two classes: the Hub's default, f1 of class 1


def test_a_metric_that_cannot_be_loaded_is_a_clear_error_not_a_skip(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(evaluate.config, "HF_EVALUATE_OFFLINE", False)  # restored after the test
    monkeypatch.setattr(evaluate.config, "DOWNLOADED_EVALUATE_PATH", tmp_path)  # a Hub look-up makes this folder
    start = time.perf_counter()
    with pytest.raises(UserError) as error:
        build_compute_metrics(2, ["precision", "no_such_metric"])
    assert time.perf_counter() - start < 10  # HF_HUB_OFFLINE carries over to evaluate: no network attempt
    message = str(error.value)
    assert "'no_such_metric'" in message and "local metric script" in message and "precision" in message


def write_metric_script(folder, name: str, features: str) -> str:
    (folder / f"{name}.py").write_text(
        f'''import datasets
import evaluate


class {name.title().replace("_", "")}(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(description="", citation="", features=datasets.Features({features}))

    def _compute(self, predictions, references, **kwargs):
        return {{"{name}": sum(int(p == r) for p, r in zip(predictions, references))}}
'''
    )
    return str(folder / f"{name}.py")


def test_a_local_metric_script_path_is_a_metric_name(tmp_path):
    ids = '{"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}'
    folder = tmp_path / "matches"
    folder.mkdir()
    script = write_metric_script(folder, "matches", ids)
    prediction = EvalPrediction(predictions=one_hot(np.array([1, 0, 0]), 2), label_ids=np.array([1, 0, 1]))
    assert build_compute_metrics(2, [script])(prediction)["matches"] == 2
    assert build_compute_metrics(2, [str(folder)])(prediction)["matches"] == 2  # the folder of matches.py


def test_a_metric_that_cannot_score_class_ids_fails_before_training(tmp_path):
    scores = '{"prediction_scores": datasets.Value("float32"), "references": datasets.Value("int64")}'
    with pytest.raises(UserError, match="'.*needs_scores.py' cannot score class-id predictions"):
        build_compute_metrics(2, [write_metric_script(tmp_path, "needs_scores", scores)])


def test_shipped_metrics_load_with_every_connection_refused(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network access during a metric load")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    compute = build_compute_metrics(3, list(SHIPPED_METRICS))
    metrics = compute(EvalPrediction(predictions=one_hot(PREDICTIONS), label_ids=LABELS))
    assert metrics["accuracy"] == pytest.approx(0.6)


SCRIPT = """
import json, numpy as np
from transformers import EvalPrediction
from hf_lelp.training.metrics import build_compute_metrics
compute = build_compute_metrics(3, ["precision", "recall", "matthews_correlation"])
print(json.dumps(compute(EvalPrediction(predictions=np.eye(3)[[0, 0, 1, 1, 2]], label_ids=np.array([0, 1, 1, 1, 0])))))
"""


def test_offline_in_a_fresh_process_and_evaluate_writes_only_under_hf_home(tmp_path):
    home, hf_home = tmp_path / "home", tmp_path / "hf_home"
    home.mkdir()
    offline = {"HF_HUB_OFFLINE": "1", "HF_EVALUATE_OFFLINE": "1", "HOME": str(home), "HF_HOME": str(hf_home)}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_MODULES", "HF_METRICS", "HF_EVALUATE", "XDG"))}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, env={**env, **offline}
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.splitlines()[-1])["accuracy"] == pytest.approx(0.6)
    assert not list(home.rglob("*"))  # nothing in ~/.cache: evaluate's module copies and folders are in HF_HOME
    assert (hf_home / "modules" / "evaluate_modules" / "metrics" / "precision").is_dir()
