"""A quiet normal run: truncating a student to its first k layers says so in one line, not in transformers' load
report; any other unexpected or missing weight is still reported (one line), and a failed load keeps the report."""

import logging
import os

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from conftest import save_tiny_model, tiny_bert
from hf_lelp.methods.modeling import load_student


@pytest.fixture
def hf_lelp_logs(caplog):
    caplog.set_level(logging.INFO, logger="hf_lelp")
    return caplog


def lines(caplog, level: int) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("hf_lelp") and r.levelno == level]


def printed(capfd, caplog) -> str:
    """stdout + stderr + every log record: transformers' handler may write to a stream that pytest swapped in."""
    out, err = capfd.readouterr()
    text = out + err + "".join(r.getMessage() for r in caplog.records)
    caplog.clear()
    return text


def dropped_line(path, kept: str, total: int, gone: str, tensors: int) -> list[str]:
    return [f"Loaded {path}: kept {kept} of {total}; dropped {gone} ({tensors} tensors)."]


def test_truncation_is_one_info_line_and_no_load_report(tmp_path, capfd, hf_lelp_logs):
    path = save_tiny_model(tmp_path / "four", layers=4)
    printed(capfd, hf_lelp_logs)
    AutoModelForSequenceClassification.from_pretrained(path, num_hidden_layers=2)
    assert "UNEXPECTED" in printed(capfd, hf_lelp_logs)  # what transformers says unless load_student holds it back

    model = load_student(path, ["class_0", "class_1"], num_layers=2)
    assert len(model.bert.encoder.layer) == 2
    assert lines(hf_lelp_logs, logging.INFO) == dropped_line(path, "layers 0-1", 4, "2 layers", 32)
    assert lines(hf_lelp_logs, logging.WARNING) == []
    text = printed(capfd, hf_lelp_logs)
    assert "UNEXPECTED" not in text and "LOAD REPORT" not in text


def test_other_unexpected_and_missing_weights_are_still_reported(tmp_path, capfd, hf_lelp_logs):
    path = save_tiny_model(tmp_path / "four", layers=4)
    weights = os.path.join(path, "model.safetensors")
    save_file({**load_file(weights), "stray.weight": torch.zeros(3)}, weights, metadata={"format": "pt"})
    load_student(path, ["class_0", "class_1"], num_layers=2)
    assert lines(hf_lelp_logs, logging.INFO) == dropped_line(path, "layers 0-1", 4, "2 layers", 32)
    stray = f"Loaded {path} with weights unexpected, not loaded: stray.weight."
    assert lines(hf_lelp_logs, logging.WARNING) == [stray]
    assert "UNEXPECTED" not in printed(capfd, hf_lelp_logs)

    encoder = str(tmp_path / "encoder")
    tiny_bert(layers=4).bert.save_pretrained(encoder)  # a bare encoder (no classifier) for 3 classes
    model = load_student(encoder, ["a", "b", "c"], num_layers=1)
    assert model.config.num_labels == 3
    assert lines(hf_lelp_logs, logging.INFO) == dropped_line(encoder, "layer 0", 4, "3 layers", 48)
    missing = f"Loaded {encoder} with weights missing, newly initialised: classifier.bias, classifier.weight."
    assert lines(hf_lelp_logs, logging.WARNING) == [missing]
    text = printed(capfd, hf_lelp_logs)
    assert "UNEXPECTED" not in text and "MISSING" not in text and "incompatible" not in text


def test_a_failed_load_keeps_transformers_report(tmp_path, capfd, hf_lelp_logs):
    path = save_tiny_model(tmp_path / "two_classes", layers=2)
    with pytest.raises(RuntimeError, match="above report"):  # a 2-class head cannot take 3 classes
        load_student(path, ["a", "b", "c"])
    assert "MISMATCH" in printed(capfd, hf_lelp_logs)
