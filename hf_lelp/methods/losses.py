"""Loss functions and LELP targets: pure functions of tensors, no Trainer, no state.

All soft losses are KL(target || student) with a batch mean, computed in float32. With KL (rather than soft
cross-entropy) LELP with S = 1 is *exactly* vanilla KD, which the tests check.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def lelp_targets(
    scores: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    subclass_temperature: float,
    num_members: int = 1,
) -> torch.Tensor:
    """Pseudo-subclass targets [B, C, S]: target_{c,s} = softmax(t/τ)_c · softmax_s(z_{c,·}/β)_s.

    Each class's S probabilities sum to the teacher's p_c, so every row sums to 1. With `num_members` = K > 1 the
    last axis holds K groups of S scores (an ensemble of K projections): the softmax runs within each group and
    each group gets weight 1/K, so the KL to these targets is the mean of the K members' KLs.
    """
    class_probs = torch.softmax(teacher_logits.float() / temperature, dim=-1)
    b, c, ks = scores.shape
    within = torch.softmax(scores.float().view(b, c, num_members, ks // num_members) / subclass_temperature, dim=-1)
    return class_probs.unsqueeze(-1) * within.view(b, c, ks) / num_members


def soft_kl(student_log_probs: torch.Tensor, target_probs: torch.Tensor) -> torch.Tensor:
    """Batch mean of KL(target || student) over the last dimension(s) after the batch dimension."""
    target = target_probs.float().flatten(1)
    log_student = student_log_probs.float().flatten(1)
    # xlogy gives 0·log 0 = 0 for targets that underflow to zero.
    return (torch.xlogy(target, target) - target * log_student).sum(dim=1).mean()


def factorized_log_probs(
    class_logits: torch.Tensor, subclass_logits: torch.Tensor | None, temperature: float, num_members: int = 1
) -> torch.Tensor:
    """Student log q_{c,s} = log softmax(u/τ)_c + log softmax_s(v_{c,·}/τ)_s, shape [B, C, S].

    With no subclass logits (S = 1) this is the class log-softmax with a trailing axis of size 1. With K members
    the softmax over s runs within each of the K groups and each group is weighted 1/K (see `lelp_targets`).
    """
    log_class = torch.log_softmax(class_logits.float() / temperature, dim=-1).unsqueeze(-1)
    if subclass_logits is None:
        return log_class
    b, c = class_logits.shape
    grouped = subclass_logits.float().view(b, c, num_members, -1) / temperature
    log_within = torch.log_softmax(grouped, dim=-1).view(b, c, -1) - math.log(num_members)
    return log_class + log_within


def flat_log_probs(subclass_logits: torch.Tensor, num_labels: int, temperature: float, num_members: int = 1):
    """The paper's student: one C·S layer, log q_{c,s} = log softmax(v/τ) over all C·S outputs, shape [B, C, S].

    With K members each member's C·S outputs form one distribution, weighted 1/K (the layout of `lelp_targets`:
    within a class, K consecutive groups of S)."""
    b = subclass_logits.shape[0]
    grouped = subclass_logits.float().view(b, num_labels, num_members, -1) / temperature
    per_member = grouped.transpose(1, 2).reshape(b, num_members, -1)  # [B, K, C·S]
    log_q = torch.log_softmax(per_member, dim=-1).view(b, num_members, num_labels, -1).transpose(1, 2)
    return log_q.reshape(b, num_labels, -1) - math.log(num_members)


def flat_class_logits(subclass_logits: torch.Tensor, num_labels: int, num_members: int = 1) -> torch.Tensor:
    """Class log-probabilities [B, C] of the paper's head: p_c = Σ_s q_{c,s} (members averaged), at τ = 1."""
    return torch.logsumexp(flat_log_probs(subclass_logits, num_labels, 1.0, num_members), dim=-1)


def lelp_loss(
    class_logits: torch.Tensor,
    subclass_logits: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    scale_by_temperature_squared: bool = True,
    num_members: int = 1,
    flat: bool = False,
) -> torch.Tensor:
    """KL between the C·S pseudo-subclass targets and the student's C·S distribution (× τ², Hinton's scaling):
    factorised (ours, `class_logits` + `subclass_logits`) or, with `flat`, the paper's single C·S layer
    (`subclass_logits` alone)."""
    if flat and subclass_logits is not None:
        log_q = flat_log_probs(subclass_logits, class_logits.shape[1], temperature, num_members)
    else:  # the factorised head (ours); with no subclass logits (S·K = 1) both heads are the class softmax
        log_q = factorized_log_probs(class_logits, subclass_logits, temperature, num_members)
    loss = soft_kl(log_q, targets)
    return loss * temperature**2 if scale_by_temperature_squared else loss


def lelp_loss_terms(
    class_logits: torch.Tensor,
    subclass_logits: torch.Tensor | None,
    targets: torch.Tensor,
    temperature: float,
    *,
    num_members: int = 1,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The factorised LELP loss (× τ²) split by the chain rule of KL into (class term, within-class term), which sum
    to `lelp_loss`: the class term KL(p_c || softmax(u/τ)_c) is KD's loss, the within-class term
    Σ_c p_c · KL(p_{s|c} || q_{s|c}) is all that the pseudo-subclasses add (issue 22: how much of the loss and its
    gradient it carries)."""
    class_targets = targets.float().sum(dim=-1)  # p_c = Σ_s target_{c,s}
    log_class = torch.log_softmax(class_logits.float() / temperature, dim=-1)
    class_term = soft_kl(log_class, class_targets)
    log_q = factorized_log_probs(class_logits, subclass_logits, temperature, num_members)
    within_term = soft_kl(log_q, targets) - class_term
    return class_term * temperature**2, within_term * temperature**2


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


def ce_loss(class_logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Hard-label cross-entropy, batch mean; labels < 0 (unlabelled) are ignored; `label_smoothing` as in
    torch (the Trainer's --label_smoothing_factor)."""
    return (
        F.cross_entropy(class_logits.float(), labels, ignore_index=-1, label_smoothing=label_smoothing)
        if bool((labels >= 0).any())
        else (class_logits.float().sum() * 0.0)
    )


def fitnet_loss(regressed_features: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """FitNet hint loss (Romero et al. 2015): mean squared error between the student's features mapped to the
    teacher's size by a learned linear regressor and the cached teacher embedding, averaged over D and the batch."""
    return F.mse_loss(regressed_features.float(), teacher_hidden.float())


def _pairwise_distances(features: torch.Tensor) -> torch.Tensor:
    squared = features.pow(2).sum(dim=1)
    return (squared.unsqueeze(0) + squared.unsqueeze(1) - 2 * features @ features.T).clamp_min(1e-12).sqrt()


def rkd_distance_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-D (Park et al. 2019): Huber loss between pairwise distances, each set divided by its mean distance."""
    off_diagonal = ~torch.eye(len(student), dtype=torch.bool, device=student.device)
    t = _pairwise_distances(teacher.float())[off_diagonal]
    s = _pairwise_distances(student.float())[off_diagonal]
    return F.smooth_l1_loss(s / s.mean(), t / t.mean())


def rkd_angle_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """RKD-A: Huber loss between the cosines of the angles ∠(e_i - e_j, e_k - e_j) over all triplets."""

    def cosines(features: torch.Tensor) -> torch.Tensor:
        differences = F.normalize(features.unsqueeze(0) - features.unsqueeze(1), p=2, dim=2)  # [j, i, D]
        return torch.bmm(differences, differences.transpose(1, 2)).flatten()

    return F.smooth_l1_loss(cosines(student.float()), cosines(teacher.float()))


def rkd_loss(
    student: torch.Tensor, teacher: torch.Tensor, distance_weight: float = 1.0, angle_weight: float = 2.0
) -> torch.Tensor:
    """Relational KD: distance + angle terms (the 1 : 2 ratio of the paper's 25 : 50 weights)."""
    return distance_weight * rkd_distance_loss(student, teacher) + angle_weight * rkd_angle_loss(student, teacher)


def pkt_loss(student: torch.Tensor, teacher: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """PKT (Passalis & Tefas 2018): cosine similarities mapped to [0, 1], normalised per row into conditional
    probabilities; the loss is Σ_ij t_ij log(t_ij / s_ij) averaged over rows (the authors' formulation)."""

    def conditional(features: torch.Tensor) -> torch.Tensor:
        normalised = F.normalize(features.float(), p=2, dim=1)
        similarity = (normalised @ normalised.T + 1.0) / 2.0
        return similarity / similarity.sum(dim=1, keepdim=True)

    s, t = conditional(student), conditional(teacher)
    return (t * torch.log((t + eps) / (s + eps))).sum(dim=1).mean()


def export_fit_loss(class_logits_of_detached: torch.Tensor, head_class_logits: torch.Tensor) -> torch.Tensor:
    """KL(p_head || softmax(u)): trains the plain C-class layer u to follow the paper's head, whose class
    probabilities (a sum of softmax terms) no single linear layer reproduces exactly. The caller detaches u's
    input features and the head's logits, so this term moves u alone."""
    return soft_kl(torch.log_softmax(class_logits_of_detached.float(), dim=-1), torch.softmax(head_class_logits, -1))
