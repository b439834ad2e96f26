"""The data of a training job as its flags say: loading, the checks against the method, the teacher's label order,
and the role of each split (selection, reported).
"""

from __future__ import annotations

import logging
import os

from transformers import (
    AutoConfig,
)

from hf_lelp.data.assets import resolve_model
from hf_lelp.data.label_order import align_to_teacher
from hf_lelp.data.load import TextClassificationData, data_summary, load_text_classification
from hf_lelp.data.transfer import carve_validation, with_transfer_data
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.config import LELPConfig

logger = logging.getLogger(__name__)


def load_data(data_args: DataArguments) -> TextClassificationData:
    """The run's data as the flags say (files win: --dataset beside them is an error), logged in one line."""
    data = load_text_classification(
        data_args.source(),
        text_column=data_args.text_column,
        label_column=data_args.label_column or None,
        label_names=data_args.class_names,
        data_files=data_args.data_files(),
        max_examples=data_args.caps(),
        encoding=data_args.encoding,
        seed=data_args.subset_seed,
        fine_label_column=data_args.fine_label_column,
    )
    if data_args.validation_from_train:
        data = carve_validation(data, data_args.validation_from_train, data_args.subset_seed)
    if data_args.transfer_data:
        data = with_transfer_data(
            data,
            data_args.transfer_data,
            data_args.text_column,
            data_args.encoding,
            data_args.max_transfer_examples,
            data_args.subset_seed,
        )
    if "train" not in data.splits:
        raise KeyError(f"Dataset '{data_args.data_name()}' has no 'train' split (splits: {list(data.splits)}).")
    log_data(data)
    train_labels = set(data.splits["train"]["label"])
    for split, rows in data.splits.items():
        unseen = sorted(set(rows["label"]) - train_labels - {-1})
        if unseen and split != "train" and train_labels != {-1}:  # an unlabelled transfer set has no classes
            logger.warning(
                "Split '%s' has classes absent from train: %s (a student cannot learn them).",
                split,
                [data.label_names[i] for i in unseen],
            )
    return data


def log_data(data: TextClassificationData) -> None:
    """One line that says what the run trains on: source, rows, class names."""
    summary = data_summary(data)
    logger.info(
        "Data: %s; train: %d rows (%d labelled); splits %s; %d classes %s.",
        summary["data_source"],
        summary["train_examples"],
        summary["labelled_train_examples"],
        summary["split_examples"],
        len(summary["class_names"]),
        summary["class_names"],
    )


def check_labels_for_method(data: TextClassificationData, args: LELPConfig) -> None:
    """Fail before any work when the method needs labels that the transfer set does not have."""
    labelled = any(label >= 0 for label in data.splits["train"]["label"])
    if labelled:
        return
    method = args.method_spec
    if method.needs_labels:
        raise ValueError(
            f"--method {args.method} {method.needs_labels}, but the transfer set has none: use --method lelp or kd."
        )
    if args.hard_label_weight > 0:
        raise ValueError(
            "--hard_label_weight > 0 needs labels, but the transfer set has none: set it to 0 (as the paper does)."
        )
    if method.subclass_source is not None and args.grouping == "label":
        raise ValueError(
            "The transfer set is unlabelled: pass --grouping prediction (per-class PCA over the "
            "teacher's predicted classes)."
        )


def align_data_to_teacher(data: TextClassificationData, model_args: ModelArguments) -> TextClassificationData:
    """The data with its label ids in the order of --teacher's outputs (matched by name; see label_order.py), read
    from the teacher's config alone, so that the student, the cache and every split agree before any work."""
    if not model_args.teacher:
        return data  # ensure_teacher_cache says that the method needs one
    return align_to_teacher(data, AutoConfig.from_pretrained(resolve_model(model_args.teacher)))


def check_eval_split(data: TextClassificationData, data_args: DataArguments) -> None:
    if data_args.eval_split and data_args.eval_split not in data.splits:
        raise ValueError(
            f"--eval_split '{data_args.eval_split}' is not a split of {data_args.data_name()} (splits: "
            f"{sorted(data.splits)}). Pass one of them, add the file with --test_file/--validation_file, or pass "
            "--eval_split '' to train without a final evaluation."
        )


def selection_split(data: TextClassificationData, data_args: DataArguments, args: LELPConfig) -> str | None:
    """The split the Trainer evaluates during training (eval_strategy, load_best_model_at_end): a labelled
    `validation` split (the data's own, or carved from train by --validation_from_train), never the reported one."""
    selects = args.eval_strategy != "no" or args.load_best_model_at_end
    labelled = "validation" in data.splits and any(y >= 0 for y in data.splits["validation"]["label"])
    if selects and not labelled:
        raise ValueError(
            f"--eval_strategy {getattr(args.eval_strategy, 'value', args.eval_strategy)} / --load_best_model_at_end "
            "evaluate during training, which needs a "
            "labelled 'validation' split (model selection on the reported split would overstate its metrics): pass "
            "--validation_file, or --validation_from_train N to carve N seeded train examples into one."
        )
    if selects and data_args.eval_split == "validation":
        raise ValueError(
            "--eval_split validation is also the model-selection split: report on a split that played no part in "
            "training (e.g. --eval_split test), or set --eval_strategy no."
        )
    return "validation" if selects else None


def split_roles(data: TextClassificationData, data_args: DataArguments, args: LELPConfig, selection: str | None):
    """What each split did in this run, from the run's facts (written into the model card)."""
    roles = {"train": "training (the distillation transfer set)" if args.uses_teacher else "training"}
    if data_args.transfer_data:
        roles["train"] = f"training: unlabelled transfer text from {os.path.basename(data_args.transfer_data)}"
    uses = []
    if selection:
        strategy = getattr(args.eval_strategy, "value", args.eval_strategy)  # an IntervalStrategy enum
        uses.append(f"evaluated every {strategy}" if strategy != "no" else "evaluated")
        if args.load_best_model_at_end:
            uses.append(f"best checkpoint chosen by {args.metric_for_best_model or 'loss'}")
    if args.auto_hparams:
        uses.append("S and β chosen by --auto_hparams")
    if "validation" in data.splits:
        roles["validation"] = "model selection: " + "; ".join(uses) if uses else "not used"
    if data_args.eval_split:
        roles[data_args.eval_split] = reported_role(data_args.eval_split, roles.get(data_args.eval_split))
    for name in data.splits:
        roles.setdefault(name, "not used")
    return {name: {"role": role, "examples": len(data.splits[name])} for name, role in roles.items()}


def reported_role(split: str, earlier: str | None) -> str:
    """The reported split's role; a split that also trained or chose something is said to be no held-out estimate."""
    if earlier in (None, "not used"):
        return "reported once, after training; never used for any choice"
    logger.warning(
        "--eval_split %s is also used for %s: its reported metrics are not a held-out estimate. Report on a split "
        "that played no part in the run (e.g. --eval_split test) for one.",
        split,
        earlier,
    )
    return f"{earlier}; also reported after training, so its metrics are not a held-out estimate"
