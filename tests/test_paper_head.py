"""The paper's student head (`--subclass_head flat`): one C·S layer whose class probability is the sum of its
subclass probabilities, against our factorised head; its export and the agreement measure."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from test_methods import _train_from_cache
from transformers import pipeline

from hf_lelp import LELPConfig
from hf_lelp.methods.losses import (
    export_fit_loss,
    flat_class_logits,
    flat_log_probs,
    kd_loss,
    lelp_loss,
    lelp_targets,
    soft_kl,
)
from hf_lelp.methods.modeling import EXPORT_LOGITS, SUBCLASS_LOGITS, attach_subclass_head, subclass_logits_of


@pytest.mark.parametrize("members", [1, 2])
def test_class_probabilities_are_sums_of_subclass_probabilities(members):
    logits = torch.randn(5, 3 * 4 * members)  # C = 3, S = 4, K members
    log_q = flat_log_probs(logits, 3, 1.0, members)
    assert log_q.shape == (5, 3, 4 * members)
    torch.testing.assert_close(log_q.exp().sum(dim=(1, 2)), torch.ones(5))
    # Each member is one softmax over its C·S outputs, weighted 1/K.
    member = logits.view(5, 3, members, 4)[:, :, 0, :].reshape(5, 12)
    torch.testing.assert_close(
        log_q.view(5, 3, members, 4)[:, :, 0].reshape(5, 12).exp(), member.softmax(-1) / members
    )
    class_probs = flat_class_logits(logits, 3, members).softmax(-1)
    torch.testing.assert_close(class_probs, log_q.exp().sum(-1))


def test_flat_loss_is_the_kl_to_one_softmax_over_all_c_times_s_outputs():
    logits, teacher = torch.randn(6, 2 * 3), torch.randn(6, 2)
    targets = lelp_targets(torch.randn(6, 2, 3), teacher, 2.0, 1.0)
    expected = soft_kl(torch.log_softmax(logits / 2.0, -1), targets.flatten(1)) * 4.0
    class_logits = torch.randn(6, 2)  # ignored by the flat head
    torch.testing.assert_close(lelp_loss(class_logits, logits, targets, 2.0, flat=True), expected)
    assert not torch.allclose(lelp_loss(class_logits, logits, targets, 2.0), expected)  # the factorised one differs


def test_with_one_subclass_the_flat_head_is_vanilla_kd():
    student, teacher = torch.randn(8, 3), torch.randn(8, 3)
    targets = lelp_targets(torch.zeros(8, 3, 1), teacher, 2.0, 1.0)
    torch.testing.assert_close(lelp_loss(student, None, targets, 2.0, flat=True), kd_loss(student, teacher, 2.0))


def test_flat_with_one_subclass_trains_the_same_student_as_kd(tmp_path):
    flat, _ = _train_from_cache("lelp", tmp_path / "flat", num_subclasses=1, temperature=2.0, subclass_head="flat")
    kd, _ = _train_from_cache("kd", tmp_path / "kd", temperature=2.0)
    for (name, a), (_, b) in zip(flat.model.state_dict().items(), kd.model.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)


def test_the_export_fit_moves_the_class_layer_only():
    from benchmarks.harness.embedding_student import embedding_student

    model = embedding_student(4, ["a", "b"], hidden_size=8)
    attach_subclass_head(model, 2, 3)
    with subclass_logits_of(model, 2, with_export=True):
        out = model(features=torch.randn(5, 4))
    head = flat_class_logits(out[SUBCLASS_LOGITS].detach(), 2)
    export_fit_loss(out[EXPORT_LOGITS], head).backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(grads[n] is not None for n in grads if n.startswith("classifier"))
    assert all(grads[n] is None for n in grads if not n.startswith("classifier")), "the body must not move"


def test_flat_head_trains_its_export_layer_toward_the_head(tmp_path):
    trainer, before = _train_from_cache("lelp", tmp_path, subclass_head="flat", num_train_epochs=10)
    model = trainer.model.eval()
    features = torch.tensor(np.array(trainer.train_dataset["features"]), dtype=torch.float32)

    def gap() -> float:  # KL(flat head's class probabilities || export layer's)
        with torch.no_grad(), subclass_logits_of(model, 3):
            out = model(features=features)
        return export_fit_loss(out.logits, flat_class_logits(out[SUBCLASS_LOGITS], 3)).item()

    trained = gap()
    trained_layer = {k: v.clone() for k, v in model.classifier.state_dict().items()}
    model.classifier.load_state_dict({k.removeprefix("classifier."): before[k] for k in before if "classifier." in k})
    assert trained < 0.7 * gap(), "the export layer must have moved toward the flat head (without the fit it stays)"
    model.classifier.load_state_dict(trained_layer)
    assert trainer.lelp_metadata()["subclass_head"] == "flat"


def test_an_unknown_head_is_refused(tmp_path):
    with pytest.raises(ValueError, match="--subclass_head must be one of"):
        LELPConfig(output_dir=str(tmp_path), subclass_head="sum", use_cpu=True)


@pytest.mark.slow
def test_the_flat_students_export_is_a_plain_model_with_measured_agreement(project, tmp_path):
    from test_export import distil

    out = tmp_path / "flat"
    results = distil(project, out, "--subclass_head", "flat", "--num_train_epochs", "2")
    test = pd.read_csv(project / "test.csv")
    answers = pipeline("text-classification", model=str(out), device=-1)(list(test["review"]))
    exported_accuracy = np.mean([a["label"] == truth for a, truth in zip(answers, test["stars"])])
    assert results["test_accuracy"] == pytest.approx(exported_accuracy, abs=1e-12)
    # The agreement compares the export with the flat head's own predictions (the trainer's).
    assert 0.0 <= results["export_agreement"] <= 1.0 and "test_trainer_accuracy" in results


def test_a_checkpoint_of_one_head_does_not_resume_into_the_other(tmp_path):
    from hf_lelp.training.resume import run_fingerprint

    flat, factorized = (
        run_fingerprint(LELPConfig(output_dir=str(tmp_path), subclass_head=head, use_cpu=True), {}, None, 10)
        for head in ("flat", "factorized")
    )
    assert flat["subclass_head"] == "flat" and flat != factorized


def test_the_export_layer_starts_at_the_mean_of_each_class_subclass_rows(tmp_path):
    from benchmarks.harness.embedding_student import embedding_student
    from hf_lelp.methods.terms import subclass_head

    class Source:
        columns = 3

    model = embedding_student(4, ["a", "b"], hidden_size=8)
    args = LELPConfig(output_dir=str(tmp_path), subclass_head="flat", num_subclasses=3, use_cpu=True)
    subclass_head(model, 2, args, Source(), 16)
    head = model.lelp_subclass_head
    torch.testing.assert_close(model.classifier.weight, head.weight.view(2, 3, -1).mean(1))
    torch.testing.assert_close(model.classifier.bias, head.bias.view(2, 3).mean(1))
