"""Loss terms and training-only modules of the methods: adapters from one training batch to the pure functions of
losses.py, and the layers a method adds to the student for training (never exported)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from hf_lelp.methods.losses import (
    ce_loss,
    export_fit_loss,
    fitnet_loss,
    flat_class_logits,
    kd_loss,
    lelp_loss,
    lelp_loss_terms,
    lelp_targets,
    pkt_loss,
    rkd_loss,
)
from hf_lelp.methods.modeling import (
    FEATURE_REGRESSOR,
    attach_feature_regressor,
    attach_subclass_head,
    auxiliary_module,
    start_classifier_at_flat_head,
)
from hf_lelp.methods.sources import RunOptions, SubclassSource
from hf_lelp.methods.student_heads import get_student_head

# --- Loss terms: adapters from one training batch to the pure functions of losses.py.


@dataclass
class LossInputs:
    """One training batch as the loss terms see it (teacher fields are None for a method without the teacher)."""

    class_logits: torch.Tensor  # [B, C]
    labels: torch.Tensor | None = None
    subclass_logits: torch.Tensor | None = None  # [B, C·S·K] from the student's subclass head
    features: torch.Tensor | None = None  # the student's classifier input (feature methods)
    example_ids: torch.Tensor | None = None
    hidden: torch.Tensor | None = None  # cached teacher embedding h [B, D]
    teacher_logits: torch.Tensor | None = None  # cached teacher logits [B, C]
    subclasses: SubclassSource | None = None  # on the batch's device
    model: torch.nn.Module | None = None  # the student (training-only modules live on it)
    export_logits: torch.Tensor | None = None  # the C-class layer on detached features (flat head only)


LossTerm = Callable[[LossInputs, RunOptions], torch.Tensor]


def ce_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    return ce_loss(batch.class_logits, batch.labels, args.label_smoothing_factor)


def kd_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    return kd_loss(batch.class_logits, batch.teacher_logits, args.temperature, args.scale_by_temperature_squared)


def subclass_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    """KL between the C·S pseudo-subclass targets of the batch's source and the student's C·S distribution."""
    source = batch.subclasses
    scores = source.subclass_scores(batch.hidden, batch.example_ids)
    targets = lelp_targets(
        scores, batch.teacher_logits, args.temperature, args.subclass_temperature, num_members=source.num_members
    )
    if batch.subclass_logits is None and scores.shape[-1] > 1:
        raise ValueError(
            f"--method {args.method} has {scores.shape[-1]} subclass columns but the student has no subclass head "
            "(attach_subclass_head with that many columns)."
        )
    flat = get_student_head(args.subclass_head).predicts_with_subclasses and batch.subclass_logits is not None
    weight = getattr(args, "within_class_weight", 1.0)
    if weight != 1.0:  # KD's class term + λ · the within-class term (factorised head only: LELPConfig checks)
        class_term, within = lelp_loss_terms(
            batch.class_logits, batch.subclass_logits, targets, args.temperature, num_members=source.num_members
        )
        loss = class_term + weight * within
        return loss if args.scale_by_temperature_squared else loss / args.temperature**2
    loss = lelp_loss(
        batch.class_logits,
        batch.subclass_logits,
        targets,
        args.temperature,
        args.scale_by_temperature_squared,
        num_members=source.num_members,
        flat=flat,
    )
    if flat and batch.export_logits is not None:
        num_labels = batch.class_logits.shape[1]
        head_classes = flat_class_logits(batch.subclass_logits.detach(), num_labels, source.num_members)
        # Scaled like the soft loss: under one gradient-norm clip, an unscaled term would barely move the layer.
        fit_scale = args.temperature**2 if args.scale_by_temperature_squared else 1.0
        loss = loss + fit_scale * export_fit_loss(batch.export_logits, head_classes)
    return loss


def fitnet_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    regressor = auxiliary_module(batch.model, FEATURE_REGRESSOR)
    if regressor is None:
        raise ValueError("--method fitnet needs the regressor: attach_feature_regressor(student, ...).")
    return fitnet_loss(regressor(batch.features), batch.hidden)


def rkd_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    return rkd_loss(batch.features, batch.hidden)


def pkt_term(batch: LossInputs, args: RunOptions) -> torch.Tensor:
    return pkt_loss(batch.features, batch.hidden)


# --- Training-only modules (never exported): `hook(student, num_labels, args, subclasses, teacher_size)`.

ModuleHook = Callable[[torch.nn.Module, int, RunOptions, Any, "int | None"], None]


def subclass_head(student, num_labels: int, args: RunOptions, subclasses, teacher_size) -> None:
    """The C·S·K subclass head; S·K = 1 needs none (the class logits are the whole distribution)."""
    columns = subclasses.columns if subclasses is not None else 1
    if columns > 1:
        head = attach_subclass_head(student, num_labels, columns, seed=args.seed)
        if get_student_head(args.subclass_head).predicts_with_subclasses:
            start_classifier_at_flat_head(student, num_labels, head)


def feature_regressor(student, num_labels: int, args: RunOptions, subclasses, teacher_size) -> None:
    attach_feature_regressor(student, num_labels, teacher_size, seed=args.seed)
