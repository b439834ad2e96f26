"""The teacher cache: its format on disk and the reader that opens it (fingerprint.py: what it was built from;
writer.py: writing it).

Layout of a finished cache folder (`meta.json` is written last and marks it complete):
    example_ids.npy  int64 [N]       sorted, unique
    hidden.npy       [N, D]          h = input of the teacher's output layer (float32/float16; bfloat16 as uint16)
    logits.npy       float32 [N, C]  teacher logits = W h + b
    labels.npy       int64 [N]       ground truth, -1 when unlabelled
    text_hashes.npy  int64 [N]       hash of each row's text (hf_lelp.data.row_identity; 0 = not recorded)
    head.safetensors weight [C, D], bias [C] of the output layer
    meta.json        fingerprint, shapes, sha256 of every file above (format 2: exactly these files)
Before the merge, rows lie in fixed shards under `shards/` (written atomically, each with its row range and a
checksum): the teacher pass (teacher_pass.py) writes them so that a rerun after an interruption skips finished ones,
and `merge_shards` (writer.py) turns them into the arrays above.
Format 1 (hf-lelp before text_hashes.npy) is still read; its rows cannot be checked against a training set.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

import datasets
import numpy as np
import torch
from safetensors.torch import load_file

from hf_lelp.base.io_utils import (
    read_json,
    sha256_file,
)
from hf_lelp.base.version import __version__
from hf_lelp.data.row_identity import dataset_identity

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
