"""The student of a run and what its method adds: the pseudo-subclass source, the training-only modules (from the
method's registry entry), LoRA; the accelerate mixed-precision mode of a config.
"""

from __future__ import annotations

import logging

from transformers import AutoTokenizer

from hf_lelp.cache.store import TeacherCache
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL
from hf_lelp.data.load import TextClassificationData
from hf_lelp.methods.modeling import apply_lora, load_student
from hf_lelp.methods.scratch_student import architecture_facts, student_from_config
from hf_lelp.methods.sources import SubclassInputs
from hf_lelp.training.arguments import ModelArguments
from hf_lelp.training.config import LELPConfig

logger = logging.getLogger(__name__)


def mixed_precision(args: LELPConfig) -> str:
    return "bf16" if args.bf16 else "fp16" if args.fp16 else "no"


def build_subclasses(cache: TeacherCache, data: TextClassificationData, model_args: ModelArguments, args: LELPConfig):
    """The pseudo-subclass source of a subclass method, built as its registry entry says (projections are saved
    beside the cache, or at --projections_path, and reused by the next run)."""
    train = data.splits["train"]
    fine = dict(zip(train[EXAMPLE_ID], train[FINE_LABEL])) if FINE_LABEL in train.column_names else None
    inputs = SubclassInputs(cache, args, fine, save=True, projections_path=model_args.projections_path)
    return args.method_spec.subclass_source(inputs)


def build_student(
    data: TextClassificationData,
    model_args: ModelArguments,
    args: LELPConfig,
    subclasses=None,
    teacher_size: int | None = None,
    max_length: int = 512,
):
    """The student model (a checkpoint fine-tuned, or a new model from --student_config; with the subclass head /
    FitNet regressor its method needs, wrapped with LoRA on request) and its tokenizer."""
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_args))
    if model_args.student_config:
        student = student_from_config(model_args.student_config, tokenizer, data.label_names, max_length)
        logger.info(
            "Student trained from scratch (--student_config %s): %s, tokenizer of %s.",
            model_args.student_config,
            architecture_facts(student),
            model_args.teacher if model_args.teacher else model_args.student,
        )
    else:
        student = load_student(resolve_model(model_args.student), data.label_names, model_args.student_num_layers)
    attach_training_modules(student, data.num_labels, args, subclasses, teacher_size)
    if model_args.use_peft:
        lora = (model_args.lora_r, model_args.lora_alpha, model_args.lora_dropout, model_args.lora_target_modules)
        student = apply_lora(student, data.num_labels, *lora)
    return student, tokenizer


def tokenizer_source(model_args: ModelArguments) -> str:
    """Where the student's tokenizer comes from: the --student checkpoint's own; a from-scratch student reads the
    teacher's (its vocabulary is what the teacher saw), or --student's when no teacher is named."""
    name = model_args.teacher if model_args.student_config and model_args.teacher else model_args.student
    return resolve_model(name)


def attach_training_modules(student, num_labels: int, args: LELPConfig, subclasses=None, teacher_size=None) -> None:
    """Add the layers only training uses (never exported), as the method's registry entry lists them: the
    subclass head (S·K columns per class), FitNet's regressor."""
    for attach in args.method_spec.training_modules:
        attach(student, num_labels, args, subclasses, teacher_size)
