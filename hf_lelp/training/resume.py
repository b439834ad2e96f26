"""Which checkpoint a run may resume: complete ones (a marker written last) of this very configuration.

A checkpoint folder of another run in the same `output_dir` (another learning rate, method, S, teacher, data...)
would otherwise be resumed silently, train 0 steps and export the old weights under the new settings.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import logging
import os

from transformers import TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.cache.store import FINGERPRINT_KEYS
from hf_lelp.training.arguments import RESUMABLE_FLAGS

logger = logging.getLogger(__name__)

CHECKPOINT_MARKER = "lelp_checkpoint_complete.json"
# A run's identity has four parts, each from where its settings are defined:
# - hf-lelp's own options (LELPConfig beyond TrainingArguments): `method` and the options its registry entry reads
#   (`Method.option_values`: S, β, the head, τ, α, its card fields). A new option of an entry takes part by
#   itself; the --auto_hparams search flags do not (the S and β it chose do).
# - the teacher cache: its fingerprint keys (hf_lelp.cache.store.FINGERPRINT_KEYS), below.
# - the recipe's model and data flags (hf_lelp/training/arguments.py): all but its RESUMABLE_FLAGS, beside their
#   definitions (paths whose content is fingerprinted instead, the teacher pass's batching, the export).
# - transformers' TrainingArguments: all but the fields below. transformers records nothing of which of its
#   arguments change the trained model, so this list is ours (checked against transformers 5.17-5.25): how long
#   a run trains, where it writes, what and how it logs, saves, evaluates and pushes, and how the same
#   computation is run (devices, data loading, memory). A new field of transformers is part of the identity
#   until it is listed here.
RESUMABLE_TRAINER_ARGUMENTS = (
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
)
TRAINER_ARGUMENTS = frozenset(field.name for field in dataclasses.fields(TrainingArguments))
# Config entries that saving or loading fills in (save_pretrained sets `architectures` and `dtype`), not structure.
CONFIG_BOOKKEEPING = ("_name_or_path", "transformers_version", "architectures", "dtype", "torch_dtype", "use_cache")
# The cache's fingerprint keys (hf_lelp.cache.store) that a checkpoint's marker records: all but the tokenizer's,
# as markers always have, so that checkpoints written before stay resumable.
CACHE_FIELDS = tuple(key for key in FINGERPRINT_KEYS if key != "tokenizer_sha256")


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def resumable_trainer_argument(name: str) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in RESUMABLE_TRAINER_ARGUMENTS)


def identity_settings(args, settings: dict | None = None) -> dict:
    """The settings that make the run (the four parts above but the cache's). A string naming a local path is
    recorded as a digest (the marker may be published with a checkpoint)."""
    values = args.to_dict()
    kept = {name: values[name] for name in TRAINER_ARGUMENTS & set(values) if not resumable_trainer_argument(name)}
    kept["method"] = args.method
    kept.update(args.method_spec.option_values(args))
    kept.update({name: value for name, value in (settings or {}).items() if name not in RESUMABLE_FLAGS})
    return {
        name: f"sha256:{_digest(value)}" if isinstance(value, str) and os.path.isabs(value) else value
        for name, value in sorted(kept.items())
    }


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
    """What makes two runs train the same model: the settings of `identity_settings` (`settings`: the recipe's
    model and data flags), the student's architecture, the teacher cache (teacher
    weights, data, max length) and the training set's size and content."""
    fingerprint = identity_settings(args, settings)
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
    # Compared on this run's identity: a setting an older checkpoint recorded that no longer makes the run (S of a
    # `ce` run, before the identity came from the registry) does not refuse it.
    diffs = [
        f"{key}: checkpoint {found.get(key)!r}, this run {fingerprint.get(key)!r}"
        for key in sorted(fingerprint)
        if found.get(key) != fingerprint.get(key)
    ]
    if diffs:
        raise ValueError(
            f"Checkpoint {checkpoint} belongs to another run configuration ("
            + "; ".join(diffs)
            + "). Resuming it would continue that run under these settings. Use the same settings, another "
            "--output_dir, or start without --resume_from_checkpoint."
        )
