"""The teacher cache: its format on disk, the reader that opens it, fingerprints, and writing a finished cache.

Layout of a finished cache folder (`meta.json` is written last and marks it complete):
    example_ids.npy  int64 [N]       sorted, unique
    hidden.npy       [N, D]          h = input of the teacher's output layer (float32/float16; bfloat16 as uint16)
    logits.npy       float32 [N, C]  teacher logits = W h + b
    labels.npy       int64 [N]       ground truth, -1 when unlabelled
    text_hashes.npy  int64 [N]       hash of each row's text (hf_lelp.data.row_identity; 0 = not recorded)
    head.safetensors weight [C, D], bias [C] of the output layer
    meta.json        fingerprint, shapes, sha256 of every file above (format 2: exactly these files)
Before the merge, rows lie in fixed shards under `shards/` (written atomically, each with its row range and a
checksum): the teacher pass (hf_lelp.cache.teacher_pass) writes them so that a rerun after an interruption skips finished
ones, and `_merge_shards` turns them into the arrays above.
Format 1 (hf-lelp before text_hashes.npy) is still read; its rows cannot be checked against a training set.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from safetensors.torch import load_file, save_file

from hf_lelp.base.version import __version__
from hf_lelp.data.load import dataset_fingerprint
from hf_lelp.base.io_utils import (
    is_no_space,
    no_space_error,
    read_json,
    sha256_file,
    sha256_tensors,
    write_atomic,
    write_json_atomic,
)
from hf_lelp.data.row_identity import NOT_RECORDED, dataset_identity

logger = logging.getLogger(__name__)

CACHE_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
# Fields that must agree between a cache and the run that wants to use it. teacher_sha256 covers the whole teacher;
# teacher_head_sha256 alone would miss a retrained encoder under an unchanged head.
FINGERPRINT_KEYS = (
    "teacher_sha256",
    "teacher_head_sha256",
    "tokenizer_sha256",
    "dataset_sha256",
    "max_length",
    "label_names",
    "dtype",
)
ARRAYS = ("example_ids", "hidden", "logits", "labels", "text_hashes")
FORMAT = "hf_lelp.teacher_cache/2"
IDENTITY_FILES = {"label": "labels.npy", "text": "text_hashes.npy"}  # what check_rows compares per example id
# The files each format consists of: meta.json must list exactly these (no fewer, no others, none outside the folder).
FORMAT_FILES = {
    "hf_lelp.teacher_cache/1": ("example_ids.npy", "hidden.npy", "logits.npy", "labels.npy", "head.safetensors"),
    FORMAT: tuple(f"{name}.npy" for name in ARRAYS) + ("head.safetensors",),
}
# Keys of tokenizer files that say how it was loaded or last called, not how it tokenises (the pass passes its own
# max_length and truncation): left out of tokenizer_sha256 so that a copy of the same tokenizer matches.
TOKENIZER_VOLATILE_KEYS = (
    "name_or_path",
    "is_local",
    "local_files_only",
    "_commit_hash",
    "model_max_length",
    "truncation",
    "padding",
)


class RowReader:
    """Reads rows of a 2-D .npy file (a 1-D one as rows of one value) with os.pread instead of a memory map.

    Random rows read through np.memmap fault in whole neighbourhoods of pages (kernel fault-around), which stay
    mapped and count in the process's RSS, so RSS grows towards the file size. pread copies exactly the requested
    rows into a fresh buffer; the page cache holds the rest, outside the process: resident memory does not grow
    with N.
    """

    def __init__(self, path: str):
        with open(path, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            read_header = (
                np.lib.format.read_array_header_1_0 if version == (1, 0) else (np.lib.format.read_array_header_2_0)
            )
            shape, fortran, dtype = read_header(handle)
            self.offset = handle.tell()
        if fortran or len(shape) not in (1, 2):
            raise CorruptCacheError(f"{path} is not a C-ordered 1-D or 2-D array.")
        shape = shape if len(shape) == 2 else (shape[0], 1)
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        self.row_bytes = shape[1] * self.dtype.itemsize
        self.fd = os.open(path, os.O_RDONLY)

    def read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), self.shape[1]), dtype=self.dtype)
        if not len(rows):
            return out
        order = np.argsort(rows, kind="stable")
        sorted_rows = rows[order]
        # Runs of consecutive rows become one read each (a streaming pass is a single read per chunk).
        breaks = np.flatnonzero(np.diff(sorted_rows) != 1) + 1
        for run_start, run_end in zip(np.r_[0, breaks], np.r_[breaks, len(rows)]):
            first, count = int(sorted_rows[run_start]), int(run_end - run_start)
            data = os.pread(self.fd, count * self.row_bytes, self.offset + first * self.row_bytes)
            if len(data) != count * self.row_bytes:
                raise CorruptCacheError(f"{self.path} is shorter than its header says (truncated?).")
            out[order[run_start:run_end]] = np.frombuffer(data, dtype=self.dtype).reshape(count, -1)
        return out

    def __del__(self):
        try:
            os.close(self.fd)
        except (AttributeError, OSError):
            pass


class CacheMismatchError(ValueError):
    """A cache (or projections file) built for other inputs than the current run."""


class CorruptCacheError(ValueError):
    """A cache file whose checksum or shape does not match its metadata."""


def sha256_state_dict(model: torch.nn.Module) -> str:
    """sha256 over every (name, dtype, shape, raw bytes) of the state_dict in name order, one tensor at a time."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # Raw bytes through a uint8 view: also covers dtypes numpy lacks (bfloat16, float8).
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _canonical_tokenizer_file(path: str) -> bytes:
    """A saved tokenizer file's bytes; a JSON file without the keys that do not change the tokens."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not path.endswith(".json"):
        return data
    payload = json.loads(data)
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in TOKENIZER_VOLATILE_KEYS}
    return json.dumps(payload, sort_keys=True).encode()


def sha256_tokenizer(tokenizer) -> str:
    """sha256 over the files `save_pretrained` writes for `tokenizer` (vocabulary, merges, normaliser, special and
    added tokens, options), by name; a copy loaded from elsewhere gives the same value, another vocabulary not."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="hf_lelp-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        for root, _, files in sorted(os.walk(folder)):
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(f"{os.path.relpath(path, folder)}\0".encode())
                digest.update(hashlib.sha256(_canonical_tokenizer_file(path)).digest())
    return digest.hexdigest()


def make_fingerprint(
    teacher_name: str,
    head: torch.nn.Linear,
    dataset_name: str,
    split: datasets.Dataset,
    max_length: int,
    label_names: list[str],
    dtype: str,
    teacher: torch.nn.Module | None = None,
    tokenizer=None,
) -> dict:
    import transformers

    fingerprint = {
        "teacher": teacher_name,
        "teacher_head_sha256": sha256_tensors(head.weight, head.bias if head.bias is not None else torch.zeros(1)),
        "dataset": dataset_name,
        "dataset_sha256": dataset_fingerprint(split),
        "num_examples": len(split),
        "max_length": int(max_length),
        "label_names": list(label_names),
        "dtype": dtype,
        "hf_lelp_version": __version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    if teacher is not None:
        fingerprint["teacher_sha256"] = sha256_state_dict(teacher)
    if tokenizer is not None:
        fingerprint["tokenizer_sha256"] = sha256_tokenizer(tokenizer)
    return fingerprint


def check_fingerprint(found: dict, expected: dict, what: str, path: str) -> None:
    """Raise CacheMismatchError naming every differing field with both values."""

    def shown(value) -> str:
        return "nothing (written by an older hf-lelp)" if value is None else repr(value)

    diffs = [
        f"{key}: {what} has {shown(found.get(key))}, this run has {expected.get(key)!r}"
        for key in FINGERPRINT_KEYS
        if key in expected and found.get(key) != expected.get(key)
    ]
    if diffs:
        raise CacheMismatchError(
            f"The {what} at {path} was built for other inputs:\n  "
            + "\n  ".join(diffs)
            + f"\nUse another --cache_dir, or delete {path} to rebuild it."
        )


def _format_files(meta: dict, path: str) -> tuple[str, ...]:
    """The files of the cache's format, which meta.json must list exactly: a checksum covers only what is listed,
    so an entry left out would go unverified, and an entry outside the folder would vouch for another file."""
    meta_path = os.path.join(path, "meta.json")
    files = FORMAT_FILES.get(meta.get("format"))
    if files is None:
        raise CorruptCacheError(
            f"{meta_path} has format {meta.get('format')!r}, which hf-lelp {__version__} does not read (it reads "
            f"{sorted(FORMAT_FILES)}). Use the hf-lelp that wrote it, or delete {path} and rerun the teacher pass."
        )
    listed = meta.get("sha256") if isinstance(meta.get("sha256"), dict) else {}
    if set(listed) != set(files):
        raise CorruptCacheError(
            f"{meta_path} does not list the files of a {meta['format']} cache: missing "
            f"{sorted(set(files) - set(listed))}, not part of the format {sorted(set(listed) - set(files))} (the "
            "checksums must cover exactly "
            f"{list(files)}, inside {path}). Delete {path} and rerun the teacher pass."
        )
    return files


@dataclass
class TeacherCache:
    """A finished cache, memory-mapped: rows are read from disk only when a batch asks for them."""

    path: str
    meta: dict
    example_ids: np.ndarray
    hidden: np.ndarray
    logits: np.ndarray
    labels: np.ndarray
    weight: torch.Tensor
    bias: torch.Tensor
    text_hashes: np.ndarray | None = None  # None: a format-1 cache, which records no row identities
    _reader: RowReader | None = field(default=None, repr=False)

    @classmethod
    def open(cls, path: str, verify: bool = True) -> TeacherCache:
        meta_path = os.path.join(path, "meta.json")
        if not os.path.isfile(meta_path):
            hint = (
                " (an interrupted teacher pass: rerun it to resume)"
                if os.path.isdir(os.path.join(path, "shards"))
                else ""
            )
            raise FileNotFoundError(f"No finished teacher cache at {path}: meta.json is missing{hint}.")
        meta = read_json(meta_path)
        files = _format_files(meta, path)
        if verify:
            for name in files:
                file_path = os.path.join(path, name)
                if not os.path.isfile(file_path) or sha256_file(file_path) != meta["sha256"][name]:
                    raise CorruptCacheError(
                        f"Cache file {file_path} is missing or corrupt (sha256 mismatch). Delete {path} and rerun "
                        "the teacher pass."
                    )
        arrays = {
            name[: -len(".npy")]: np.load(os.path.join(path, name), mmap_mode="r")
            for name in files
            if name.endswith(".npy")
        }
        head = load_file(os.path.join(path, "head.safetensors"))
        n, d, c = meta["num_examples"], meta["hidden_size"], meta["num_labels"]
        per_row = {array.shape for name, array in arrays.items() if name not in ("hidden", "logits")}
        if arrays["hidden"].shape != (n, d) or arrays["logits"].shape != (n, c) or per_row != {(n,)}:
            raise CorruptCacheError(f"Cache arrays at {path} do not have the shapes meta.json records.")
        return cls(
            path,
            meta,
            arrays["example_ids"],
            arrays["hidden"],
            arrays["logits"],
            arrays["labels"],
            head["weight"],
            head["bias"],
            arrays.get("text_hashes"),
        )

    @property
    def num_examples(self) -> int:
        return int(self.meta["num_examples"])

    @property
    def hidden_size(self) -> int:
        return int(self.meta["hidden_size"])

    @property
    def num_labels(self) -> int:
        return int(self.meta["num_labels"])

    @property
    def fingerprint(self) -> dict:
        return self.meta["fingerprint"]

    def rows(self, example_ids: np.ndarray) -> np.ndarray:
        """Row positions of `example_ids`; a clear error for ids the cache does not hold."""
        example_ids = np.asarray(example_ids, dtype=np.int64)
        if self.meta.get("ids_are_positions"):
            rows = example_ids
            valid = (rows >= 0) & (rows < self.num_examples)
        else:
            rows = np.searchsorted(self.example_ids, example_ids)
            rows = np.minimum(rows, self.num_examples - 1)
            valid = self.example_ids[rows] == example_ids
        if not np.all(valid):
            raise KeyError(
                f"Example ids {example_ids[~valid][:10].tolist()} are not in the teacher cache at {self.path}: the "
                "training data differs from the transfer set the cache was built on."
            )
        return rows

    def hidden_rows(self, rows: np.ndarray) -> torch.Tensor:
        """float32 tensor of cached embeddings for `rows`, read with pread (see RowReader)."""
        if self._reader is None:
            self._reader = RowReader(os.path.join(self.path, "hidden.npy"))
        block = self._reader.read(np.asarray(rows, dtype=np.int64))
        if self.meta["fingerprint"]["dtype"] == "bfloat16":
            return torch.from_numpy(block.view(np.int16)).view(torch.bfloat16).float()
        return torch.from_numpy(block).float()

    def lookup(self, example_ids) -> tuple[torch.Tensor, torch.Tensor]:
        """(hidden [B, D], teacher logits [B, C]) as float32 CPU tensors for a batch of example ids."""
        rows = self.rows(np.asarray(example_ids))
        return self.hidden_rows(rows), torch.from_numpy(np.asarray(self.logits[rows], dtype=np.float32))

    @property
    def records_texts(self) -> bool:
        """Whether the cache holds the hash of every row's text (format 2, written from the texts)."""
        return self.text_hashes is not None and bool(self.meta.get("texts_recorded"))

    def check_rows(self, dataset: datasets.Dataset, what: str = "train dataset", chunk_size: int = 65536) -> None:
        """Refuse `dataset` (raw, or tokenised by tokenize_split) unless each of its example ids names the text and
        label that the cache holds for that id; a shuffled or edited copy of the data gets other ids for its rows.

        What cannot be compared is said in a warning: texts, when the cache (format 1) or the dataset (tokenised
        without a `text_hash` column) does not record them; the labels are compared whenever both have them.
        Reads a chunk of rows at a time, the cache's side with pread: memory stays flat (see RowReader)."""
        readers: dict[str, RowReader] = {}
        first: dict[str, list[int]] = {}  # the first mismatching ids, per compared column
        first_bad, num_bad, dataset_hashes = [], 0, False
        for start in range(0, len(dataset), chunk_size):
            ids, hashes, labels = dataset_identity(dataset, start, start + chunk_size)
            rows, bad = self.rows(ids), np.zeros(len(ids), dtype=bool)
            dataset_hashes = hashes is not None
            for name, values in (("label", labels), ("text", hashes if self.records_texts else None)):
                if values is None:
                    continue
                if name not in readers:
                    readers[name] = RowReader(os.path.join(self.path, IDENTITY_FILES[name]))
                differs = readers[name].read(rows).ravel() != values
                first.setdefault(name, []).extend(ids[differs][:10].tolist())
                bad |= differs
            first_bad.extend(ids[bad][:10].tolist())
            num_bad += int(bad.sum())
        if len(dataset) and "text" not in readers:
            logger.warning(
                "The texts of the %s cannot be checked against the teacher cache at %s: %s; only its labels were "
                "compared.",
                what,
                self.path,
                "the cache records no texts (written by an older hf-lelp or by write_cache without texts; delete it "
                "and rerun the teacher pass to have every row checked)"
                if dataset_hashes
                else "the dataset has no 'text' or 'text_hash' column (tokenise it with hf_lelp.tokenize_split)",
            )
        if num_bad:
            details = "; ".join(f"the {name} differs at ids {some[:10]}" for name, some in first.items() if some)
            raise CacheMismatchError(
                f"The {what} is not the data the teacher cache at {self.path} was built on: {num_bad} of "
                f"{len(dataset)} example ids name other rows, first ids {first_bad[:10]} ({details}). A shuffled or "
                "edited copy of the data numbers its rows differently. Train on the data the cache was built on "
                "(same file, same order), or build a cache for this data in another cache_dir."
            )

    def iter_chunks(self, chunk_size: int = 65536):
        """Stream (hidden float32, logits, labels) over the whole cache without loading it at once."""
        for start in range(0, self.num_examples, chunk_size):
            rows = np.arange(start, min(start + chunk_size, self.num_examples))
            yield (
                self.hidden_rows(rows),
                torch.from_numpy(np.asarray(self.logits[rows])),
                torch.from_numpy(np.asarray(self.labels[rows])),
            )


def _shard_paths(shard_dir: str, index: int) -> tuple[str, str]:
    stem = os.path.join(shard_dir, f"shard-{index:05d}")
    return f"{stem}.safetensors", f"{stem}.json"


def _shard_is_valid(shard_dir: str, index: int, rows: int, start: int | None = None) -> bool:
    """Whether shard `index` is finished, intact and holds `rows` rows from row `start` of the split on (any start
    when None: for inspection only). A shard of a run with another shard size covers other rows: not reused."""
    data_path, info_path = _shard_paths(shard_dir, index)
    if not (os.path.isfile(data_path) and os.path.isfile(info_path)):
        return False
    try:
        info = read_json(info_path)
    except ValueError:
        return False
    if start is not None and info.get("start") != start:
        return False
    return info.get("rows") == rows and info.get("sha256") == sha256_file(data_path)


def _to_storage(hidden: torch.Tensor, dtype: str) -> torch.Tensor:
    return hidden.to(CACHE_DTYPES[dtype]).cpu().contiguous()


def _write_shard(shard_dir: str, index: int, tensors: dict[str, torch.Tensor], start: int) -> None:
    """Shard `index` (example_id, hidden, logits, labels, text_hash) holding the split's rows from `start` on, then
    its row range and checksum (see _shard_is_valid)."""
    data_path, info_path = _shard_paths(shard_dir, index)
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
            "hidden": _to_storage(hidden, fingerprint["dtype"]),
            "logits": logits.float().contiguous(),
            "labels": labels.long().contiguous(),
            "text_hash": torch.as_tensor(hashes).long().contiguous(),
        }
        _write_shard(shard_dir, k, tensors, start=n)
        n, num_shards = n + len(ids), k + 1
    _merge_shards(
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


def _merge_shards(
    shard_dir, num_shards, cache_dir, fingerprint, head, head_name, n, shard_size, expected_ids=None
) -> None:
    """Stream the shards into memory-mappable arrays, sorted by example id, then write meta.json last.

    The merged ids must be unique and, when `expected_ids` (the split's) is given, exactly those."""
    remove_stale_temporaries(cache_dir)  # of a merge killed before it could remove them itself
    first = load_file(_shard_paths(shard_dir, 0)[0])
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
            if not _shard_is_valid(shard_dir, k, min(shard_size, n - k * shard_size), start=k * shard_size):
                raise CorruptCacheError(
                    f"Shard {k} in {shard_dir} is corrupt or holds other rows; rerun the teacher pass to recompute it."
                )
            shard = load_file(_shard_paths(shard_dir, k)[0])
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


def __getattr__(name: str):
    # build_teacher_cache moved to hf_lelp.cache.teacher_pass, which imports this module: resolved lazily, no import cycle.
    if name == "build_teacher_cache":
        from hf_lelp.cache.teacher_pass import build_teacher_cache

        return build_teacher_cache
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
