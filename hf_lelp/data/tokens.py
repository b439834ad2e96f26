"""Tokenised splits and the fingerprint of a split's content (ids, texts and labels), which a teacher cache records."""

from __future__ import annotations

import hashlib
import logging

import datasets

from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, LABEL, TEXT
from hf_lelp.data.row_identity import TEXT_HASH, text_hashes

logger = logging.getLogger(__name__)


def dataset_fingerprint(split: datasets.Dataset) -> str:
    """sha256 over (example_id, text, label) of every row: a cache built on other data is refused."""
    digest = hashlib.sha256()
    for batch in split.iter(batch_size=4096):
        for example_id, text, label in zip(batch[EXAMPLE_ID], batch[TEXT], batch[LABEL]):
            digest.update(f"{example_id}\x1f{label}\x1f".encode())
            digest.update(text.encode("utf-8", errors="replace"))
            digest.update(b"\x1e")
    return digest.hexdigest()


def tokenize_split(
    split: datasets.Dataset, tokenizer, max_length: int, text_column: str = TEXT, label_column: str | None = LABEL
) -> datasets.Dataset:
    """Tokenise without padding (the collator pads per batch); keep example_id, and the labels (as `labels`) when
    the split has `label_column`. A `text_hash` column keeps what identifies each row's text, so that a trainer can
    check the tokenised rows against the teacher cache's (hf_lelp.data.row_identity)."""
    if text_column not in split.column_names:
        raise KeyError(f"The split has no text column '{text_column}' (columns: {split.column_names}).")
    has_labels = bool(label_column) and label_column in split.column_names
    if has_labels and getattr(split.features[label_column], "dtype", None) in ("string", "large_string"):
        raise ValueError(
            f"Column '{label_column}' holds label names, not ids: convert the split with "
            "hf_lelp.data.load.as_text_classification_split first."
        )

    def encode(batch):
        encoded = tokenizer(list(batch[text_column]), truncation=True, max_length=max_length)
        encoded[TEXT_HASH] = text_hashes(batch[text_column]).tolist()
        if has_labels:
            encoded["labels"] = list(batch[label_column])
        return encoded

    used = dict.fromkeys((text_column, label_column, TEXT, LABEL, FINE_LABEL))
    dropped = [c for c in used if c in split.column_names]
    tokenized = split.map(encode, batched=True, remove_columns=dropped, desc="Tokenising")
    # A text that fills max_length was (almost always) cut: counted and reported, never silently.
    truncated = sum(n >= max_length for n in map(len, tokenized["input_ids"]))
    if truncated:
        logger.warning(
            "%d of %d texts reach max_length=%d tokens and were truncated.", truncated, len(split), max_length
        )
    return tokenized
