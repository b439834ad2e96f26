"""Which checkpoint a run may resume: complete ones (a marker written last) of this very configuration.

A checkpoint folder of another run in the same `output_dir` (another learning rate, method, S, teacher, data...)
would otherwise be resumed silently, train 0 steps and export the old weights under the new settings.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .io_utils import read_json, write_json_atomic

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "lelp_checkpoint_complete.json"
# TrainingArguments that change the trained weights (not the logging, saving, evaluation or epoch count: a run
# may be resumed to train longer).
TRAINING_FIELDS = (
    "learning_rate",
    "weight_decay",
    "adam_beta1",
    "adam_beta2",
    "adam_epsilon",
    "max_grad_norm",
    "lr_scheduler_type",
    "lr_scheduler_kwargs",
    "warmup_steps",
    "optim",
    "optim_args",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "seed",
    "data_seed",
    "label_smoothing_factor",
)
LELP_FIELDS = (
    "method",
    "subclass_head",
    "num_subclasses",
    "subclass_temperature",
    "temperature",
    "hard_label_weight",
    "scale_by_temperature_squared",
    "grouping",
    "null_space",
    "rotate",
    "projection_seed",
    "ensemble_size",
    "feature_loss_weight",
)
# Config entries that saving or loading fills in (save_pretrained sets `architectures` and `dtype`), not structure.
CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype", "use_cache")
CACHE_FIELDS = ("teacher_sha256", "teacher_head_sha256", "dataset_sha256", "max_length", "label_names", "dtype")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def run_fingerprint(args, model_config: dict, cache_fingerprint: dict | None, num_train_examples: int) -> dict:
    """What makes two runs train the same model: optimisation and LELP options, the student's architecture,
    the teacher cache (teacher weights, data, max length) and the size of the training set."""
    fingerprint = {name: getattr(args, name, None) for name in (*TRAINING_FIELDS, *LELP_FIELDS)}
    architecture = {k: v for k, v in model_config.items() if k not in CONFIG_BOOKKEEPING}
    fingerprint["student_architecture"] = _digest(architecture)
    for name in CACHE_FIELDS:
        fingerprint[f"cache_{name}"] = (cache_fingerprint or {}).get(name)
    fingerprint["train_examples"] = num_train_examples
    return json.loads(json.dumps(fingerprint, default=str))


def mark_complete(folder: str, global_step: int, fingerprint: dict) -> None:
    write_json_atomic(os.path.join(folder, CHECKPOINT_MARKER), {"global_step": global_step, "run": fingerprint})


def checkpoint_steps(output_dir: str) -> list[str]:
    """Checkpoint folders of `output_dir`, newest first."""
    if not os.path.isdir(output_dir):
        return []
    names = [n for n in os.listdir(output_dir) if n.startswith(f"{PREFIX_CHECKPOINT_DIR}-")]
    step = lambda n: int(n.rsplit("-", 1)[-1]) if n.rsplit("-", 1)[-1].isdigit() else -1  # noqa: E731
    return [os.path.join(output_dir, n) for n in sorted(names, key=step, reverse=True)]


def last_complete_checkpoint(output_dir: str) -> str:
    """The newest checkpoint folder whose completion marker exists (incomplete ones are skipped, with a warning)."""
    for folder in checkpoint_steps(output_dir):
        if os.path.isfile(os.path.join(folder, CHECKPOINT_MARKER)):
            return folder
        logger.warning("Skipping incomplete checkpoint %s (interrupted while saving).", os.path.basename(folder))
    raise ValueError(
        f"--resume_from_checkpoint true: no complete checkpoint in {output_dir} to resume from. Drop the flag to "
        "start from scratch."
    )


def check_resumable(checkpoint: str, fingerprint: dict) -> None:
    """Refuse a checkpoint that is incomplete or belongs to another configuration, naming every difference."""
    marker = os.path.join(checkpoint, CHECKPOINT_MARKER)
    if not os.path.isfile(marker):
        raise ValueError(
            f"Checkpoint {checkpoint} is incomplete (training stopped while it was being written) or was not "
            "written by LELPTrainer. Resume from an earlier checkpoint, or pass --resume_from_checkpoint true to "
            "pick the last complete one."
        )
    found = read_json(marker).get("run")
    if found is None:
        raise ValueError(
            f"Checkpoint {checkpoint} records no run configuration (written by an older hf-lelp), so it cannot be "
            "shown to belong to this run. Start without --resume_from_checkpoint, or use another --output_dir."
        )
    diffs = [
        f"{key}: checkpoint {found.get(key)!r}, this run {fingerprint.get(key)!r}"
        for key in sorted(set(found) | set(fingerprint))
        if found.get(key) != fingerprint.get(key)
    ]
    if diffs:
        raise ValueError(
            f"Checkpoint {checkpoint} belongs to another run configuration ("
            + "; ".join(diffs)
            + "). Resuming it would continue that run under these settings. Use the same settings, another "
            "--output_dir, or start without --resume_from_checkpoint."
        )
