"""Writing a teacher cache: row shards (each atomic, with its row range and checksum), their merge into the
arrays of a finished cache, and the removal of what an interrupted merge left behind.
"""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
import tempfile

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hf_lelp.base.io_utils import is_no_space, no_space_error, read_json, sha256_file, write_atomic, write_json_atomic
from hf_lelp.cache.store import ARRAYS, CACHE_DTYPES, FORMAT, CorruptCacheError, TeacherCache
from hf_lelp.data.row_identity import NOT_RECORDED

logger = logging.getLogger(__name__)


def shard_paths(shard_dir: str, index: int) -> tuple[str, str]:
    stem = os.path.join(shard_dir, f"shard-{index:05d}")
    return f"{stem}.safetensors", f"{stem}.json"


def shard_is_valid(shard_dir: str, index: int, rows: int, start: int | None = None) -> bool:
    """Whether shard `index` is finished, intact and holds `rows` rows from row `start` of the split on (any start
    when None: for inspection only). A shard of a run with another shard size covers other rows: not reused."""
    data_path, info_path = shard_paths(shard_dir, index)
    if not (os.path.isfile(data_path) and os.path.isfile(info_path)):
        return False
    try:
        info = read_json(info_path)
    except ValueError:
        return False
    if start is not None and info.get("start") != start:
        return False
    return info.get("rows") == rows and info.get("sha256") == sha256_file(data_path)


def to_storage(hidden: torch.Tensor, dtype: str) -> torch.Tensor:
    return hidden.to(CACHE_DTYPES[dtype]).cpu().contiguous()


def write_shard(shard_dir: str, index: int, tensors: dict[str, torch.Tensor], start: int) -> None:
    """Shard `index` (example_id, hidden, logits, labels, text_hash) holding the split's rows from `start` on, then
    its row range and checksum (see shard_is_valid)."""
    data_path, info_path = shard_paths(shard_dir, index)
    write_atomic(data_path, lambda p: save_file(tensors, p))
    info = {"start": int(start), "rows": len(tensors["example_id"]), "sha256": sha256_file(data_path)}
    write_json_atomic(info_path, info)


def write_cache(
    cache_dir: str,
    hidden: torch.Tensor,
    logits: torch.Tensor,
    labels: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    fingerprint: dict,
    example_ids: torch.Tensor | None = None,
    shard_size: int = 65536,
    text_hashes: torch.Tensor | np.ndarray | None = None,
) -> TeacherCache:
    """Write arrays computed elsewhere (tests, external teachers) as a finished cache. `text_hashes`
    (hf_lelp.data.row_identity.text_hashes of each row's text) let trainers check their data against it."""
    n = len(hidden)
    example_ids = torch.arange(n) if example_ids is None else example_ids
    chunks = (
        (
            example_ids[i : i + shard_size],
            hidden[i : i + shard_size],
            logits[i : i + shard_size],
            labels[i : i + shard_size],
            None if text_hashes is None else torch.as_tensor(np.asarray(text_hashes[i : i + shard_size])),
        )
        for i in range(0, n, shard_size)
    )
    return write_cache_chunks(cache_dir, chunks, weight, bias, fingerprint)


def write_cache_chunks(
    cache_dir: str, chunks, weight: torch.Tensor, bias: torch.Tensor, fingerprint: dict
) -> TeacherCache:
    """Write (example_ids, hidden, logits, labels[, text_hashes]) chunks, all but the last of equal size, as a
    finished cache (a chunk without text hashes records none: its rows cannot be checked against a dataset).

    Streams: memory holds one chunk at a time, so synthetic caches of millions of rows can be made.
    """
    shard_dir = os.path.join(cache_dir, "shards")
    head = torch.nn.Linear(weight.shape[1], weight.shape[0])
    with torch.no_grad():
        head.weight.copy_(weight)
        head.bias.copy_(bias)
    n, shard_size, num_shards = 0, None, 0
    for k, (ids, hidden, logits, labels, *hashes) in enumerate(chunks):
        shard_size = shard_size or len(ids)
        hashes = hashes[0] if hashes and hashes[0] is not None else torch.full((len(ids),), NOT_RECORDED)
        tensors = {
            "example_id": ids.long().contiguous(),
            "hidden": to_storage(hidden, fingerprint["dtype"]),
            "logits": logits.float().contiguous(),
            "labels": labels.long().contiguous(),
            "text_hash": torch.as_tensor(hashes).long().contiguous(),
        }
        write_shard(shard_dir, k, tensors, start=n)
        n, num_shards = n + len(ids), k + 1
    merge_shards(
        shard_dir, num_shards, cache_dir, dict(fingerprint, num_examples=n), head, "classifier", n, shard_size
    )
    return TeacherCache.open(cache_dir)


def _reserved_memmap(path: str, shape: tuple, dtype) -> np.memmap:
    """A .npy opened for writing through a memory map, with all its blocks allocated first.

    A full disk then fails here as OSError(ENOSPC) instead of killing the process with SIGBUS when a write through
    the map finds no block (open_memmap alone only makes a sparse file).
    """
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        try:
            os.posix_fallocate(handle.fileno(), 0, size)
        except (AttributeError, OSError) as error:  # no fallocate (macOS, some file systems): write the zeros
            if isinstance(error, OSError) and error.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            handle.seek(array.offset)  # past the header
            for start in range(array.offset, size, 1 << 22):
                handle.write(bytes(min(1 << 22, size - start)))
            handle.flush()
            os.fsync(handle.fileno())
    return array


def merge_shards(
    shard_dir, num_shards, cache_dir, fingerprint, head, head_name, n, shard_size, expected_ids=None
) -> None:
    """Stream the shards into memory-mappable arrays, sorted by example id, then write meta.json last.

    The merged ids must be unique and, when `expected_ids` (the split's) is given, exactly those."""
    remove_stale_temporaries(cache_dir)  # of a merge killed before it could remove them itself
    first = load_file(shard_paths(shard_dir, 0)[0])
    d, c = first["hidden"].shape[1], first["logits"].shape[1]
    storage = np.int16 if fingerprint["dtype"] == "bfloat16" else first["hidden"].numpy().dtype
    shapes = {
        "example_ids": ((n,), np.int64),
        "hidden": ((n, d), storage),
        "logits": ((n, c), np.float32),
        "labels": ((n,), np.int64),
        "text_hashes": ((n,), np.int64),
    }
    tmp: dict[str, str] = {}
    writing = cache_dir
    try:
        out = {}
        for name, (shape, dt) in shapes.items():
            writing = os.path.join(cache_dir, f"{name}.npy")
            fd, tmp[name] = tempfile.mkstemp(prefix=f".tmp-{name}-", suffix=".npy", dir=cache_dir)
            os.close(fd)
            out[name] = _reserved_memmap(tmp[name], shape, dt)
        writing = cache_dir
        for k in range(num_shards):
            if not shard_is_valid(shard_dir, k, min(shard_size, n - k * shard_size), start=k * shard_size):
                raise CorruptCacheError(
                    f"Shard {k} in {shard_dir} is corrupt or holds other rows; rerun the teacher pass to recompute it."
                )
            shard = load_file(shard_paths(shard_dir, k)[0])
            lo, hi = k * shard_size, k * shard_size + len(shard["example_id"])
            hidden = shard["hidden"].view(torch.int16) if fingerprint["dtype"] == "bfloat16" else shard["hidden"]
            out["example_ids"][lo:hi] = shard["example_id"].numpy()
            out["hidden"][lo:hi] = hidden.numpy()
            out["logits"][lo:hi] = shard["logits"].numpy()
            out["labels"][lo:hi] = shard["labels"].numpy()
            out["text_hashes"][lo:hi] = shard["text_hash"].numpy()
        order = np.argsort(out["example_ids"], kind="stable")
        if np.any(order != np.arange(n)):  # rows are positions in the split; sort only when ids are not increasing
            for name in ARRAYS:
                out[name][:] = np.asarray(out[name])[order]
        _check_merged_ids(np.asarray(out["example_ids"]), expected_ids, shard_dir)
        ids_are_positions = bool(np.array_equal(out["example_ids"], np.arange(n)))
        texts_recorded = bool(np.all(np.asarray(out["text_hashes"]) != NOT_RECORDED))
        for array in out.values():
            array.flush()
        del out
    except BaseException as error:
        # Shards and any earlier complete cache are untouched: a rerun after freeing space merges again.
        for path in tmp.values():
            if os.path.exists(path):
                os.remove(path)
        if is_no_space(error):
            raise no_space_error(writing) from error
        raise
    meta_path = os.path.join(cache_dir, "meta.json")
    if os.path.exists(meta_path):  # an older cache's meta.json must not vouch for the arrays that replace its own
        os.remove(meta_path)
    checksums = {}
    for name in ARRAYS:
        final = os.path.join(cache_dir, f"{name}.npy")
        os.replace(tmp[name], final)
        checksums[f"{name}.npy"] = sha256_file(final)
    head_path = os.path.join(cache_dir, "head.safetensors")
    bias = head.bias if head.bias is not None else torch.zeros(head.out_features)
    write_atomic(
        head_path,
        lambda p: save_file(
            {
                "weight": head.weight.detach().float().cpu().contiguous(),
                "bias": bias.detach().float().cpu().contiguous(),
            },
            p,
        ),
    )
    checksums["head.safetensors"] = sha256_file(head_path)
    write_json_atomic(
        meta_path,
        {
            "format": FORMAT,
            "fingerprint": fingerprint,
            "num_examples": n,
            "hidden_size": d,
            "num_labels": c,
            "head_module": head_name,
            "ids_are_positions": ids_are_positions,
            "texts_recorded": texts_recorded,
            "sha256": checksums,
        },
    )
    shutil.rmtree(shard_dir)


def _check_merged_ids(merged: np.ndarray, expected: np.ndarray | None, shard_dir: str) -> None:
    """A finished cache holds each id exactly once (and, when known, exactly the split's ids): shards that overlap
    or leave rows out (e.g. of runs with other shard sizes) are refused before anything is written."""
    duplicated = np.unique(merged[1:][np.diff(merged) == 0])
    missing = extra = np.empty(0, dtype=np.int64)
    if expected is not None:
        expected = np.unique(np.asarray(expected, dtype=np.int64))
        missing, extra = np.setdiff1d(expected, merged), np.setdiff1d(merged, expected)
    if len(duplicated) or len(missing) or len(extra):
        raise CorruptCacheError(
            f"The shards in {shard_dir} do not hold each example id of the transfer set exactly once (ids twice: "
            f"{duplicated[:10].tolist()}, missing: {missing[:10].tolist()}, not in the split: {extra[:10].tolist()}). "
            f"Delete {shard_dir} and rerun the teacher pass."
        )


# Temporary files of this module in a cache folder: the merge's arrays, and write_atomic's head/meta.json.
# (tempfile.mkstemp's random part is [a-z0-9_]; nothing else of a cache folder has these names)
_TEMPORARY = re.compile(
    rf"\.tmp-(?:(?:{'|'.join(ARRAYS)})-[a-z0-9_]+\.npy|[a-z0-9_]+-(?:head\.safetensors|meta\.json))"
)


def remove_stale_temporaries(cache_dir: str) -> list[str]:
    """Remove what a merge killed mid-way (SIGKILL, power loss) left in `cache_dir`: files as large as the cache
    that no later run would otherwise delete. Returns the removed names."""
    if not os.path.isdir(cache_dir):
        return []
    stale = sorted(name for name in os.listdir(cache_dir) if _TEMPORARY.fullmatch(name))
    for name in stale:
        os.remove(os.path.join(cache_dir, name))
    if stale:
        logger.info("Removed %d temporary files of an interrupted cache merge from %s.", len(stale), cache_dir)
    return stale
