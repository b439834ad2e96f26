"""The teacher pass: one run of the teacher over the transfer set, stored as a teacher cache (hf_lelp.cache.store).

Each process runs the teacher over its share of fixed shards of rows and writes each finished shard atomically,
so a rerun after an interruption skips finished shards; the main process then merges them into the cache.
"""

from __future__ import annotations

import logging
import math
import os
import shutil

import datasets
import numpy as np
import torch
from tqdm.auto import tqdm

from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.cache.fingerprint import check_fingerprint, make_fingerprint
from hf_lelp.cache.heads import capture_layer_input, find_output_layer
from hf_lelp.cache.store import CACHE_DTYPES, TeacherCache
from hf_lelp.cache.writer import merge_shards, remove_stale_temporaries, shard_is_valid, to_storage, write_shard
from hf_lelp.data.columns import EXAMPLE_ID, LABEL, TEXT
from hf_lelp.data.label_order import check_teacher_labels
from hf_lelp.data.load import as_text_classification_split
from hf_lelp.data.row_identity import text_hashes

logger = logging.getLogger(__name__)


def _remove_merge_leftovers(cache_dir: str) -> None:
    """A merge killed after meta.json was written (the cache is complete) but before it removed its shards, or one
    killed earlier in a folder that then got a finished cache, leaves files no run needs: remove them."""
    remove_stale_temporaries(cache_dir)
    shard_dir = os.path.join(cache_dir, "shards")
    if os.path.isdir(shard_dir):
        shutil.rmtree(shard_dir, ignore_errors=True)
        logger.info("Removed the shards of a finished teacher cache from %s.", shard_dir)


def _encode(tokenizer, texts, max_length, device) -> dict[str, torch.Tensor]:
    encoded = tokenizer(list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt")
    return {k: v.to(device) for k, v in encoded.items()}


def _check_finite(h: torch.Tensor, logits: torch.Tensor, example_ids: list) -> None:
    """Raise FloatingPointError naming the examples whose captured h or logits hold NaN/Inf."""
    bad = ~(torch.isfinite(h).all(dim=1) & torch.isfinite(logits).all(dim=1))
    if not bad.any():
        return
    ids = [example_ids[i] for i in torch.nonzero(bad).flatten().tolist()]
    cause = " (all of them: the teacher's weights are likely not finite)" if len(ids) > 1 and bad.all() else ""
    raise FloatingPointError(
        f"The teacher produced NaN/Inf for example ids {ids[:20]}{cause}: its outputs are not finite. Check those "
        "texts and the teacher checkpoint for NaN/Inf weights, and run the teacher pass without --bf16/--fp16 (half "
        "precision can overflow)."
    )


@torch.no_grad()
def _run_shard(
    teacher,
    head,
    tokenizer,
    rows: datasets.Dataset,
    *,
    max_length: int,
    batch_size: int,
    device,
    autocast,
    dtype: str,
    progress,
) -> dict[str, torch.Tensor]:
    hidden, logits = [], []
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        encoded = _encode(tokenizer, batch[TEXT], max_length, device)
        with capture_layer_input(head) as captured, autocast():
            out = teacher(**encoded).logits
        h = captured["input"].float()
        logits_batch = out.float()
        _check_finite(h, logits_batch, batch[EXAMPLE_ID])
        hidden.append(to_storage(h, dtype))
        logits.append(logits_batch.cpu())
        progress.update(len(batch[TEXT]))
    return {
        "example_id": torch.tensor(rows[EXAMPLE_ID], dtype=torch.int64),
        "hidden": torch.cat(hidden),
        "logits": torch.cat(logits),
        "labels": torch.tensor(rows[LABEL], dtype=torch.int64),
        "text_hash": torch.from_numpy(text_hashes(rows[TEXT])),
    }


def _check_output_layer(teacher, head, tokenizer, split, *, max_length: int, device, autocast) -> None:
    """Prove on a few examples that logits = W h + b, i.e. that the hooked layer really is the output layer."""
    sample = split.select(range(min(4, len(split))))
    encoded = _encode(tokenizer, sample[TEXT], max_length, device)
    with torch.no_grad(), capture_layer_input(head) as captured, autocast():
        logits = teacher(**encoded).logits.float()
    h = captured["input"].float()
    # Before the tolerance below: from NaN logits it would be NaN, and torch.allclose fails on that obscurely.
    _check_finite(h, logits, sample[EXAMPLE_ID])
    recomputed = h @ head.weight.float().T
    if head.bias is not None:
        recomputed = recomputed + head.bias.float()
    tolerance = 1e-3 + 2e-2 * float(logits.abs().max())  # generous enough for bf16/fp16 autocast
    if not torch.allclose(recomputed, logits, atol=tolerance):
        raise ValueError(
            "The teacher's logits are not W·h + b of the detected output layer (a head with a non-linearity after "
            "its last linear layer?). Pass --teacher_head_module naming the final nn.Linear."
        )


def build_teacher_cache(
    teacher,
    tokenizer,
    split: datasets.Dataset,
    cache_dir: str,
    *,
    label_names: list[str],
    max_length: int = 128,
    batch_size: int = 64,
    dtype: str = "float32",
    shard_size: int = 8192,
    teacher_name: str | None = None,
    dataset_name: str = "dataset",
    head_module: str | None = None,
    accelerator=None,
    text_column: str = TEXT,
    label_column: str | None = LABEL,
) -> TeacherCache:
    """Run the teacher once over `split` (data-parallel under `accelerate launch`) and return the opened cache.

    `split` is a loaded split (example_id/text/label) or any Dataset with `text_column` (and `label_column`, None
    for unlabelled text): that one is converted by `as_text_classification_split`, ids being row positions if it
    has none. An existing finished cache is reused when its fingerprint matches and refused (CacheMismatchError)
    otherwise; finished shards of an interrupted pass are reused.
    """
    from accelerate import Accelerator

    if dtype not in CACHE_DTYPES:
        raise ValueError(f"Cache dtype '{dtype}' is not one of {sorted(CACHE_DTYPES)}.")
    label_feature = split.features.get(LABEL)
    if (
        (text_column, label_column) != (TEXT, LABEL)
        or not {EXAMPLE_ID, TEXT, LABEL} <= set(split.column_names)
        or getattr(label_feature, "dtype", None) in ("string", "large_string")
    ):  # a user's Dataset: other columns, no ids or label names; a loaded split is used as it is (same fingerprint)
        split = as_text_classification_split(split, text_column, label_column, label_names)
    # The one label-order check (the CLI's too): cached labels and label_names follow the teacher's outputs.
    order = check_teacher_labels(teacher, label_names)
    split, label_names = order.relabel(split), order.names
    ids = np.asarray(split[EXAMPLE_ID], dtype=np.int64)
    unique_ids, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        duplicated = unique_ids[counts > 1]
        raise ValueError(f"Duplicate example ids in the transfer set: {duplicated[:10].tolist()}. Ids must be unique.")
    # An Accelerator, not just accelerate's PartialState: the pass needs its autocast and mixed-precision setting.
    accelerator = accelerator or Accelerator()
    head_name, head = find_output_layer(teacher, len(label_names), head_module)
    expected = make_fingerprint(
        teacher_name or getattr(teacher, "name_or_path", "teacher"),
        head,
        dataset_name,
        split,
        max_length,
        label_names,
        dtype,
        teacher,
        tokenizer,
    )
    # Recorded, not compared: a cache from a float32 pass is fine for a bf16 run and the other way round.
    expected["teacher_autocast"] = str(accelerator.mixed_precision)
    if os.path.isfile(os.path.join(cache_dir, "meta.json")):
        cache = TeacherCache.open(cache_dir)
        check_fingerprint(cache.fingerprint, expected, "teacher cache", cache_dir)
        if accelerator.is_main_process:
            _remove_merge_leftovers(cache_dir)
        return cache

    shard_dir = os.path.join(cache_dir, "shards")
    progress_path = os.path.join(shard_dir, "fingerprint.json")
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if os.path.isfile(progress_path):
            check_fingerprint(read_json(progress_path), expected, "interrupted teacher pass", shard_dir)
        else:
            write_json_atomic(progress_path, expected)
    accelerator.wait_for_everyone()

    teacher = teacher.to(accelerator.device).eval()
    _check_output_layer(
        teacher,
        head,
        tokenizer,
        split,
        max_length=max_length,
        device=accelerator.device,
        autocast=accelerator.autocast,
    )
    num_shards = math.ceil(len(split) / shard_size)

    def shard_rows(k: int) -> int:
        return min(shard_size, len(split) - k * shard_size)

    # accelerate splits the shard indices, not the rows: every shard (fixed rows, the unit of resumption) goes to
    # exactly one process, unpadded, whatever the number of processes of this run or of the interrupted one.
    with accelerator.split_between_processes(list(range(num_shards))) as mine:
        todo = [k for k in mine if not shard_is_valid(shard_dir, k, shard_rows(k), start=k * shard_size)]
    if accelerator.is_main_process:
        logger.info(
            "Teacher pass: %d shards of %d rows, %d on this process, %d of them already finished.",
            num_shards,
            shard_size,
            len(mine),
            len(mine) - len(todo),
        )
    progress = tqdm(
        total=sum(shard_rows(k) for k in todo),
        desc=f"Teacher pass ({head_name})",
        disable=not accelerator.is_local_main_process,
    )
    for k in todo:
        rows = split.select(range(k * shard_size, k * shard_size + shard_rows(k)))
        tensors = _run_shard(
            teacher,
            head,
            tokenizer,
            rows,
            max_length=max_length,
            batch_size=batch_size,
            device=accelerator.device,
            autocast=accelerator.autocast,
            dtype=dtype,
            progress=progress,
        )
        write_shard(shard_dir, k, tensors, start=k * shard_size)
    progress.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        merge_shards(
            shard_dir, num_shards, cache_dir, expected, head, head_name, len(split), shard_size, expected_ids=ids
        )
    accelerator.wait_for_everyone()
    return TeacherCache.open(cache_dir)
