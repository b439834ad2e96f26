"""What identifies a row of the transfer set: a hash of its text, kept per example id.

The teacher cache stores these hashes beside its labels (`text_hashes.npy`), and `tokenize_split` keeps them in a
`text_hash` column, so a trainer handed tokenised data can still tell whether each example id names the text and
label the cache was built on (a shuffled copy of a file gets new ids; its rows then disagree with the cache's).
"""

from __future__ import annotations

import hashlib

import datasets
import numpy as np

from .columns import EXAMPLE_ID, LABEL, TEXT

TEXT_HASH = "text_hash"  # column of tokenize_split's output: the hash of the text the tokens came from
NOT_RECORDED = 0  # a row whose text was not known to the writer of the cache (write_cache without texts)


def text_hash(text) -> int:
    """A signed 64-bit hash of the text (None counts as ""), never NOT_RECORDED."""
    data = ("" if text is None else str(text)).encode("utf-8", errors="replace")
    value = int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little", signed=True)
    return value or 1


def text_hashes(texts) -> np.ndarray:
    return np.fromiter((text_hash(t) for t in texts), dtype=np.int64, count=len(texts))


def _column(dataset: datasets.Dataset, name: str) -> np.ndarray:
    return np.asarray(dataset.with_format("numpy")[name])


def dataset_identity(dataset: datasets.Dataset) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """(example ids, text hashes or None, labels or None) of a split, raw (`text`/`label`) or tokenised
    (`text_hash`/`labels`); None where the dataset lacks the column."""
    columns = set(dataset.column_names)
    ids = _column(dataset, EXAMPLE_ID).astype(np.int64)
    if TEXT_HASH in columns:
        hashes = _column(dataset, TEXT_HASH).astype(np.int64)
    elif TEXT in columns:
        hashes = text_hashes(dataset.with_format(None)[TEXT][:])
    else:
        hashes = None
    label_column = next((c for c in (LABEL, "labels") if c in columns), None)
    labels = _column(dataset, label_column) if label_column else None
    if labels is not None and (labels.dtype.kind not in "iu" or labels.ndim != 1):  # names, or multi-label rows
        labels = None
    return ids, hashes, None if labels is None else labels.astype(np.int64)
