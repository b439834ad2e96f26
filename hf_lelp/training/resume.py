"""Which checkpoint a run may resume: complete ones (a marker written last) of this very configuration.

A checkpoint folder of another run in the same `output_dir` (another learning rate, method, S, teacher, data...)
would otherwise be resumed silently, train 0 steps and export the old weights under the new settings.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import logging
import os

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.cache.store import FINGERPRINT_KEYS

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "lelp_checkpoint_complete.json"
# Every setting takes part in a run's identity except these, which may change when a run is resumed: how long it
# trains, where it writes, what and how it logs, saves, evaluates and pushes, how the same computation is run
# (devices, data loading, memory), and the paths whose content is fingerprinted instead (data, teacher, student).
# A new setting of transformers or hf-lelp is part of the identity until it is listed here.
RESUMABLE_SETTINGS = (
    # TrainingArguments (LELPConfig)
    "output_dir",
    "num_train_epochs",
    "max_steps",
    "resume_from_checkpoint",
    "restore_callback_states_from_checkpoint",
    "ignore_data_skip",
    "logging_*",
    "log_*",
    "disable_tqdm",
    "report_to",
    "run_name",
    "project",
    "trackio_*",
    "include_num_input_tokens_seen",
    "skip_memory_metrics",
    "eval_*",
    "per_device_eval_batch_size",
    "prediction_loss_only",
    "include_for_metrics",
    "batch_eval_metrics",
    "bf16_full_eval",
    "fp16_full_eval",
    "load_best_model_at_end",
    "metric_for_best_model",
    "greater_is_better",
    "save_*",
    "enable_jit_checkpoint",
    "push_to_hub",
    "hub_*",
    "*token*",
    "use_cpu",
    "local_rank",
    "dataloader_*",
    "ddp_*",
    "fsdp",
    "fsdp_config",
    "deepspeed",
    "parallelism_config",
    "torch_compile*",
    "tf32",
    "gradient_checkpointing*",
    "activation_checkpointing*",
    "torch_empty_cache_steps",
    "use_cache",
    "debug",
    "do_train",
    "do_eval",
    "do_predict",
    "auto_hparams",  # the search itself: the S and β it chose are part of the identity
    "auto_num_subclasses",
    "auto_subclass_temperatures",
    "auto_budget_epochs",
    "auto_keep",
    # DataArguments: the train split's content is fingerprinted (train_digest); evaluation data is not trained on
    "dataset",
    "train_file",
    "validation_file",
    "test_file",
    "transfer_data",
    "encoding",
    "eval_split",
    "max_eval_examples",
    # ModelArguments: teacher and cache by their content (cache_*), the student by its architecture and the
    # checkpoint's weights; the rest is the teacher pass's batching, the card and the export
    "teacher",
    "student",
    "cache_dir",
    "cache_shard_size",
    "teacher_batch_size",
    "projections_path",
    "baseline_results",
    "extra_metrics",
    "merge_lora",
)
# Config entries that saving or loading fills in (save_pretrained sets `architectures` and `dtype`), not structure.
CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype", "use_cache")
# The cache's fingerprint keys (hf_lelp.cache.store) that a checkpoint's marker records: all but the tokenizer's,
# as markers always have, so that checkpoints written before stay resumable.
CACHE_FIELDS = tuple(key for key in FINGERPRINT_KEYS if key != "tokenizer_sha256")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resumable(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in RESUMABLE_SETTINGS)


def identity_settings(values: dict) -> dict:
    """The settings of `values` (flag name -> value) that make the run: all but RESUMABLE_SETTINGS. A string
    naming a local path is recorded as a digest (the marker may be published with a checkpoint)."""
    kept = {}
    for name, value in values.items():
        if resumable(name):
            continue
        if isinstance(value, str) and os.path.isabs(value):
            value = f"sha256:{_digest(value)}"
        kept[name] = value
    return kept


def dataset_digest(dataset) -> str:
    """A digest of a (tokenised) dataset's content: its rows, in order, column by column."""
    digest = hashlib.sha256()
    names = sorted(dataset.column_names)
    digest.update(json.dumps([names, len(dataset)]).encode())
    for batch in dataset.with_format(None).iter(batch_size=4096):
        digest.update(json.dumps([batch[name] for name in names], default=str).encode())
    return digest.hexdigest()[:16]


def run_fingerprint(
    args,
    model_config: dict,
    cache_fingerprint: dict | None,
    num_train_examples: int,
    train_digest: str | None = None,
    settings: dict | None = None,
) -> dict:
    """What makes two runs train the same model: every setting but the resumable ones (the training arguments,
    and `settings`: the recipe's model and data flags), the student's architecture, the teacher cache (teacher
    weights, data, max length) and the training set's size and content."""
    fingerprint = identity_settings(args.to_dict())
    fingerprint.update(identity_settings(settings or {}))
    architecture = {k: v for k, v in model_config.items() if k not in CONFIG_BOOKKEEPING}
    fingerprint["student_architecture"] = _digest(architecture)
    for name in CACHE_FIELDS:
        fingerprint[f"cache_{name}"] = (cache_fingerprint or {}).get(name)
    fingerprint["train_examples"] = num_train_examples
    fingerprint["train_digest"] = train_digest
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
    if found is None or "train_digest" not in found:  # before every setting and the train data were recorded
        raise ValueError(
            f"Checkpoint {checkpoint} records no full run configuration (written by an older hf-lelp), so it cannot "
            "be shown to belong to this run. Start without --resume_from_checkpoint, or use another --output_dir."
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
