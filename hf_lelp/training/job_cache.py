"""The teacher cache of a training job: opened when it matches, else built once by the teacher pass (data-
parallel), in its default folder unless --cache_dir names one.
"""

from __future__ import annotations

import gc
import os
from contextlib import nullcontext

from accelerate import Accelerator
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
)

from hf_lelp.base.errors import StateError
from hf_lelp.base.locks import exclusive_folder
from hf_lelp.cache.folders import teacher_cache_folder
from hf_lelp.cache.store import TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.data.assets import resolve_model
from hf_lelp.data.label_order import align_to_teacher
from hf_lelp.data.load import TextClassificationData
from hf_lelp.data.preflight import check_max_length
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.builder import mixed_precision
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.launch import warn_if_fewer_processes


def check_process_group(args: LELPConfig) -> None:
    """Refuse processes that were launched together but did not join one group (they would race on files); say so
    when `accelerate launch` was asked for more processes than it started."""
    warn_if_fewer_processes(args.world_size)
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        raise StateError(
            f"{launched} processes were launched but each runs alone (world size {args.world_size}). On a machine "
            "without GPUs pass --use_cpu true so that they join one gloo process group."
        )


def ensure_teacher_cache(
    data: TextClassificationData, data_args: DataArguments, model_args: ModelArguments, args: LELPConfig
) -> TeacherCache:
    """Open the cache when it matches this run, else run the teacher once (data-parallel across processes)."""
    check_process_group(args)
    if not model_args.teacher:
        raise ValueError(
            f"--method {args.method} needs --teacher (a fine-tuned classifier folder or Hub id; train one with "
            "`hf-lelp train-teacher`)."
        )
    cache_dir = model_args.cache_dir or default_cache_dir(data_args, model_args)
    teacher_path = resolve_model(model_args.teacher)
    teacher = AutoModelForSequenceClassification.from_pretrained(teacher_path)
    data = align_to_teacher(data, teacher.config)  # a no-op for distill, which aligned its data first
    check_max_length(data_args.max_length, {f"--teacher {model_args.teacher}": teacher.config})
    tokenizer = AutoTokenizer.from_pretrained(teacher_path)
    building = not os.path.isfile(os.path.join(cache_dir, "meta.json"))
    # Two runs building one cache would race on its shards: the main process holds the folder while it builds.
    holding = exclusive_folder(cache_dir, "teacher cache") if building and args.process_index == 0 else nullcontext()
    with holding:
        cache = _build_cache(teacher, tokenizer, data, cache_dir, data_args, model_args, args)
    del teacher  # the teacher is never in memory while the student trains
    gc.collect()
    return cache


def _build_cache(teacher, tokenizer, data, cache_dir, data_args, model_args, args) -> TeacherCache:
    return build_teacher_cache(
        teacher,
        tokenizer,
        data.splits["train"],
        cache_dir,
        label_names=data.label_names,
        max_length=data_args.max_length,
        dataset_name=data.name,
        accelerator=Accelerator(cpu=args.use_cpu, mixed_precision=mixed_precision(args)),
        **model_args.teacher_pass_options(),
    )


def default_cache_dir(data_args: DataArguments, model_args: ModelArguments) -> str:
    """Where a cache lives when --cache_dir is not given: never inside output_dir (which is what gets published),
    but under $HF_LELP_CACHE (default ~/.cache/hf_lelp), keyed by the teacher, the data and the cache options."""
    teacher = resolve_model(model_args.teacher)
    key = {
        "teacher": os.path.abspath(teacher) if os.path.exists(teacher) else teacher,
        "dataset": data_args.source(),
        "files": {k: os.path.abspath(v) for k, v in (data_args.data_files() or {}).items()},
        "transfer": data_args.transfer_data and os.path.abspath(data_args.transfer_data),
        "caps": [data_args.caps(), data_args.max_transfer_examples, data_args.subset_seed],
        "validation_from_train": data_args.validation_from_train,
        "text": [data_args.text_column, data_args.label_column, data_args.class_names],
        "cache": [data_args.max_length, model_args.cache_dtype, model_args.teacher_head_module],
    }
    return teacher_cache_folder(teacher, key)
