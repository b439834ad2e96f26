"""Losses and targets against NumPy references and hand-computed values."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hf_lelp.methods.losses import ce_loss, factorized_log_probs, kd_loss, lelp_loss, lelp_targets, soft_kl


def numpy_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def numpy_targets(scores, teacher_logits, tau, beta):
    p = numpy_softmax(teacher_logits / tau)
    out = np.zeros_like(scores)
    for b in range(scores.shape[0]):
        for c in range(scores.shape[1]):
            out[b, c] = p[b, c] * numpy_softmax(scores[b, c] / beta)
    return out


@pytest.mark.parametrize("tau,beta", [(1.0, 1.0), (2.0, 0.5), (4.0, 3.0)])
def test_targets_match_numpy_reference(tau, beta):
    rng = np.random.default_rng(0)
    scores, teacher = rng.normal(size=(5, 3, 4)), rng.normal(size=(5, 3)) * 3
    got = lelp_targets(torch.tensor(scores), torch.tensor(teacher), tau, beta).numpy()
    np.testing.assert_allclose(got, numpy_targets(scores, teacher, tau, beta), rtol=1e-5, atol=1e-7)


def test_targets_sum_to_one_and_per_class_to_teacher_probability():
    generator = torch.Generator().manual_seed(1)
    scores, teacher = torch.randn(7, 4, 5, generator=generator), torch.randn(7, 4, generator=generator)
    targets = lelp_targets(scores, teacher, temperature=2.0, subclass_temperature=0.7)
    torch.testing.assert_close(targets.sum(dim=(1, 2)), torch.ones(7))
    torch.testing.assert_close(targets.sum(dim=2), torch.softmax(teacher / 2.0, dim=-1))


def test_kd_hand_computed_value():
    # p = (0.75, 0.25), q = (0.5, 0.5): KL = 0.75 ln 1.5 + 0.25 ln 0.5
    loss = kd_loss(torch.zeros(1, 2), torch.tensor([[math.log(3.0), 0.0]]), temperature=1.0)
    assert loss.item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5), abs=1e-6)


@pytest.mark.parametrize("tau", [1.0, 3.0])
def test_kd_matches_torch_kl_div(tau):
    generator = torch.Generator().manual_seed(2)
    student, teacher = torch.randn(6, 3, generator=generator), torch.randn(6, 3, generator=generator)
    expected = F.kl_div(F.log_softmax(student / tau, -1), F.softmax(teacher / tau, -1), reduction="batchmean")
    torch.testing.assert_close(kd_loss(student, teacher, tau), expected * tau**2)


def test_soft_kl_is_zero_for_identical_distributions_and_positive_otherwise():
    probs = torch.softmax(torch.randn(4, 6), dim=-1)
    assert soft_kl(probs.log(), probs).abs().item() < 1e-6
    assert soft_kl(torch.log_softmax(torch.randn(4, 6), -1), probs).item() > 0


def test_lelp_loss_matches_numpy_reference_for_factorised_student():
    rng = np.random.default_rng(3)
    b, c, s, tau = 4, 3, 2, 2.0
    u, v = rng.normal(size=(b, c)), rng.normal(size=(b, c * s))
    targets = numpy_targets(rng.normal(size=(b, c, s)), rng.normal(size=(b, c)), tau, 1.0)
    q = numpy_softmax(u / tau)[:, :, None] * numpy_softmax(v.reshape(b, c, s) / tau)
    expected = (targets * (np.log(targets) - np.log(q))).sum(axis=(1, 2)).mean() * tau**2
    got = lelp_loss(torch.tensor(u), torch.tensor(v), torch.tensor(targets), tau)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_factorised_student_is_a_distribution_whose_class_marginal_is_the_class_softmax():
    u, v = torch.randn(3, 4), torch.randn(3, 12)
    log_q = factorized_log_probs(u, v, temperature=1.5)
    torch.testing.assert_close(log_q.exp().sum(dim=(1, 2)), torch.ones(3))
    torch.testing.assert_close(log_q.exp().sum(dim=2), torch.softmax(u / 1.5, dim=-1))


def test_lelp_with_one_subclass_equals_vanilla_kd():
    generator = torch.Generator().manual_seed(4)
    student, teacher = torch.randn(8, 3, generator=generator), torch.randn(8, 3, generator=generator)
    scores = torch.randn(8, 3, 1, generator=generator)  # any scores: softmax over one subclass is 1
    for tau in (1.0, 2.5):
        targets = lelp_targets(scores, teacher, tau, subclass_temperature=0.3)
        torch.testing.assert_close(lelp_loss(student, None, targets, tau), kd_loss(student, teacher, tau))


def test_ce_ignores_unlabelled_rows():
    logits = torch.tensor([[2.0, 0.0], [0.0, 5.0]])
    only_first = F.cross_entropy(logits[:1], torch.tensor([0]))
    torch.testing.assert_close(ce_loss(logits, torch.tensor([0, -1])), only_first)
    assert ce_loss(logits, torch.tensor([-1, -1])).item() == 0.0


def test_losses_are_float32_for_half_precision_inputs():
    student = torch.randn(4, 2).to(torch.bfloat16)
    teacher = torch.randn(4, 2).to(torch.bfloat16)
    assert kd_loss(student, teacher, 2.0).dtype == torch.float32
    targets = lelp_targets(torch.randn(4, 2, 3).half(), teacher, 1.0, 1.0)
    assert targets.dtype == torch.float32
    assert lelp_loss(student, torch.randn(4, 6).half(), targets, 1.0).dtype == torch.float32


def test_the_lelp_loss_is_kd_plus_a_within_class_term():
    """Chain rule of KL: the factorised LELP loss = KD's class term + Σ_c p_c KL(p_s|c || q_s|c), computed apart."""
    from hf_lelp.methods.losses import lelp_loss_terms

    torch.manual_seed(0)
    class_logits, subclass_logits, teacher = torch.randn(5, 3), torch.randn(5, 3 * 4), torch.randn(5, 3)
    targets = lelp_targets(torch.randn(5, 3, 4), teacher, 4.0, 1.0)
    class_term, within = lelp_loss_terms(class_logits, subclass_logits, targets, 4.0)
    torch.testing.assert_close(class_term, kd_loss(class_logits, teacher, 4.0))
    torch.testing.assert_close(class_term + within, lelp_loss(class_logits, subclass_logits, targets, 4.0))
    p = targets.sum(-1)  # the teacher's class probabilities
    p_within = targets / p.unsqueeze(-1)
    log_q_within = torch.log_softmax(subclass_logits.view(5, 3, 4) / 4.0, dim=-1)
    expected = (p * (p_within * (p_within.log() - log_q_within)).sum(-1)).sum(-1).mean() * 16.0
    torch.testing.assert_close(within, expected)
    assert within > 0
    _, none = lelp_loss_terms(class_logits, None, lelp_targets(torch.zeros(5, 3, 1), teacher, 4.0, 1.0), 4.0)
    assert abs(float(none)) < 1e-6  # one subclass per class: nothing within classes


def test_the_within_class_weight_scales_only_the_within_class_term(tmp_path):
    """λ = 1 is the paper's loss (the exact lelp_loss path), λ = 0 is KD's loss; recorded in the options (the run's
    identity), refused with the paper's flat head."""
    from hf_lelp import LELPConfig
    from hf_lelp.methods.sources import SubclassSource
    from hf_lelp.methods.terms import LossInputs, subclass_term

    class Scores(SubclassSource):
        num_members = 1

        def subclass_scores(self, hidden, example_ids):
            return hidden.view(len(hidden), 2, 3)

    torch.manual_seed(0)
    batch = LossInputs(torch.randn(4, 2), subclass_logits=torch.randn(4, 6), hidden=torch.randn(4, 6))
    batch.teacher_logits, batch.example_ids, batch.subclasses = torch.randn(4, 2), torch.arange(4), Scores()
    base = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True, temperature=2.0, num_subclasses=3)
    paper = subclass_term(batch, LELPConfig(method="lelp", **base))
    kd_only = subclass_term(batch, LELPConfig(method="lelp", within_class_weight=0.0, **base))
    half = subclass_term(batch, LELPConfig(method="lelp", within_class_weight=0.5, **base))
    torch.testing.assert_close(kd_only, kd_loss(batch.class_logits, batch.teacher_logits, 2.0))
    torch.testing.assert_close(half, kd_only + 0.5 * (paper - kd_only))
    args = LELPConfig(method="lelp", within_class_weight=0.25, **base)
    assert args.method_spec.option_values(args)["within_class_weight"] == 0.25
    assert args.method_spec.option_values(LELPConfig(method="lelp", **base))["within_class_weight"] == 1.0
    with pytest.raises(ValueError, match="--subclass_head factorized"):
        LELPConfig(method="lelp", within_class_weight=0.5, subclass_head="flat", **base)
    with pytest.raises(ValueError, match=">= 0"):
        LELPConfig(method="lelp", within_class_weight=-1.0, **base)
