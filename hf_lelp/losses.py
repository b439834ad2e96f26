"""Loss functions and LELP targets: pure functions of tensors, no Trainer, no state.

All soft losses are KL(target || student) with a batch mean, computed in float32. With KL (rather than soft
cross-entropy) LELP with S = 1 is *exactly* vanilla KD, which the tests check.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def lelp_targets(
    scores: torch.Tensor, teacher_logits: torch.Tensor, temperature: float, subclass_temperature: float
) -> torch.Tensor:
    """Pseudo-subclass targets [B, C, S]: target_{c,s} = softmax(t/τ)_c · softmax_s(z_{c,·}/β)_s.

    Each class's S probabilities sum to the teacher's p_c, so every row sums to 1.
    """
    class_probs = torch.softmax(teacher_logits.float() / temperature, dim=-1)
    within = torch.softmax(scores.float() / subclass_temperature, dim=-1)
    return class_probs.unsqueeze(-1) * within


def soft_kl(student_log_probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(target || student) over the last dimension(s) after the batch dimension."""
    target = target_probs.float().flatten(1)
    log_student = student_log_probs.float().flatten(1)
    # xlogy gives 0·log 0 = 0 for targets that underflow to zero.
    return (torch.xlogy(target, target) - target * log_student).sum(dim=1).mean()


def factorized_log_probs(
    class_logits: torch.Tensor, subclass_logits: torch.Tensor | None, temperature: float
) -> torch.Tensor:
    """Student log q_{c,s} = log softmax(u/τ)_c + log softmax_s(v_{c,·}/τ)_s, shape [B, C, S].

    With no subclass logits (S = 1) this is the class log-softmax with a trailing axis of size 1.
    """
    log_class = torch.log_softmax(class_logits.float() / temperature, dim=-1).unsqueeze(-1)
    if subclass_logits is None:
        return log_class
    b, c = class_logits.shape
    log_within = torch.log_softmax(subclass_logits.float().view(b, c, -1) / temperature, dim=-1)
    return log_class + log_within


def lelp_loss(
    class_logits: torch.Tensor,
    subclass_logits: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    scale_by_temperature_squared: bool = True,
) -> torch.Tensor:
    """KL between the C·S pseudo-subclass targets and the student's C·S distribution (× τ², Hinton's scaling)."""
    loss = soft_kl(factorized_log_probs(class_logits, subclass_logits, temperature), targets)
    return loss * temperature**2 if scale_by_temperature_squared else loss


def kd_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    scale_by_temperature_squared: bool = True,
) -> torch.Tensor:
    """Hinton KD: KL(softmax(t/τ) || softmax(s/τ)) × τ²."""
    targets = torch.softmax(teacher_logits.float() / temperature, dim=-1)
    loss = soft_kl(torch.log_softmax(student_logits.float() / temperature, dim=-1), targets)
    return loss * temperature**2 if scale_by_temperature_squared else loss


def ce_loss(class_logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Hard-label cross-entropy, batch mean; labels < 0 (unlabelled) are ignored."""
    return (
        F.cross_entropy(class_logits.float(), labels, ignore_index=-1)
        if bool((labels >= 0).any())
        else (class_logits.float().sum() * 0.0)
    )
