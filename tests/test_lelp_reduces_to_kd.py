"""LELP with one subclass per class is KD (issue 22, item 5): on the fine-tuned transformer track, through the
recipe's own job, S = 1 must train the very same student as `--method kd` (the within-class softmax of one logit is
1, so the subclass head carries no loss and no gradient), with dropout on, to the last digit of every weight."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from conftest import make_tokenizer, tiny_bert
from hf_lelp import commands

pytestmark = pytest.mark.slow


def _student_with_dropout(folder) -> str:
    model = tiny_bert(2, hidden=32, layers=2, seed=3, dropout=0.1)  # the real track trains with dropout 0.1
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    model.save_pretrained(folder)
    make_tokenizer().save_pretrained(folder)
    return str(folder)


@pytest.mark.parametrize("subclass_head", ["factorized", "flat"])
def test_lelp_with_one_subclass_trains_the_same_transformer_student_as_kd(project, tmp_path, subclass_head):
    student = _student_with_dropout(tmp_path / "student_init")
    common = [str(project / "distill.yaml"), "--student", student, "--student_num_layers", "2"]
    common += ["--temperature", "2.0", "--num_train_epochs", "2", "--cache_dir", str(tmp_path / "cache")]
    commands.main(["distill", *common, "--method", "kd", "--output_dir", str(tmp_path / "kd")])
    commands.main(
        ["distill", *common, "--method", "lelp", "--num_subclasses", "1", "--subclass_head", subclass_head]
        + ["--output_dir", str(tmp_path / "lelp")]
    )
    kd, lelp = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("kd", "lelp"))
    assert kd.keys() == lelp.keys()
    initial = load_file(str(tmp_path / "student_init" / "model.safetensors"))
    assert not torch.equal(
        kd["bert.encoder.layer.0.attention.self.query.weight"],
        initial["bert.encoder.layer.0.attention.self.query.weight"],
    ), "the students must have trained"
    for name in kd:
        assert torch.equal(kd[name], lelp[name]), name
    results = [json.loads((tmp_path / name / "results.json").read_text()) for name in ("kd", "lelp")]
    assert results[0]["test_accuracy"] == results[1]["test_accuracy"]
    assert results[0]["test_trainer_loss"] == pytest.approx(results[1]["test_trainer_loss"], rel=0, abs=0)
