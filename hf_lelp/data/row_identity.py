"""What identifies a row of the transfer set: a hash of its text, kept per example id.

The teacher cache stores these hashes beside its labels (`text_hashes.npy`), and `tokenize_split` keeps them in a
`text_hash` column, so a trainer handed tokenised data can still tell whether each example id names the text and
label the cache was built on (a shuffled copy of a file gets new ids; its rows then disagree with the cache's).
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np

from hf_lelp.data.columns import EXAMPLE_ID, LABEL, TEXT

TEXT_HASH = "text_hash"  # column of tokenize_split's output: the hash of the text the tokens came from
NOT_RECORDED = 0  # a row whose text was not known to the writer of the cache (write_cache without texts)


def text_hash(text) -> int:
    """A signed 64-bit hash of the text (None counts as ""), never NOT_RECORDED."""
    data = ("" if text is None else str(text)).encode("utf-8", errors="replace")
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    return value or 1


def text_hashes(texts) -> np.ndarray:
    return np.fromiter((text_hash(t) for t in texts), dtype=np.int64, count=len(texts))


def _label_column(dataset: datasets.Dataset) -> str | None:
    """The integer label column of a raw (`label`) or tokenised (`labels`) split; None for names or none."""
    for name in (LABEL, "labels"):
        if name in dataset.column_names:
            dtype = str(getattr(dataset.features[name], "dtype", ""))  # ClassLabel: int64; a Sequence: none
            return name if dtype.startswith(("int", "uint")) else None
    return None


def dataset_identity(
    dataset: datasets.Dataset, start: int, stop: int
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(example ids, text hashes or None, labels or None) of rows start..stop of a split, raw (`text`/`label`) or
    tokenised (`text_hash`/`labels`); None where the dataset lacks the column. Read a slice at a time, so that
    memory stays flat whatever the size of the split."""
    hash_column = TEXT_HASH if TEXT_HASH in dataset.column_names else None
    label_column = _label_column(dataset)
    columns = [c for c in (EXAMPLE_ID, hash_column, label_column) if c]
    rows = dataset.with_format("numpy", columns=columns)[start:stop]
    hashes = rows[hash_column].astype(np.int64) if hash_column else None
    if hashes is None and TEXT in dataset.column_names:
        hashes = text_hashes(dataset.with_format(None, columns=[TEXT])[start:stop][TEXT])
    labels = rows[label_column].astype(np.int64) if label_column else None
    return rows[EXAMPLE_ID].astype(np.int64), hashes, labels
