"""Unlabelled transfer sets and validation splits carved from train (issue #7).

LELP needs no labels (the paper trains with α = 0): the transfer set can be raw text. Its labels are set to -1, so
that per-class PCA must group by the teacher's predictions and every label-dependent option is refused early.
"""

from __future__ import annotations

import logging
import os

import datasets
import numpy as np

from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, LABEL, TEXT, UNLABELLED
from hf_lelp.data.load import TextClassificationData, as_text, column_values, seeded_subset
from hf_lelp.data.local_files import read_local

logger = logging.getLogger(__name__)


def read_unlabelled_texts(path: str, text_column: str = TEXT, encoding: str = "utf-8") -> list[str]:
    """Texts of a .txt file (one per non-empty line) or of a table's text column."""
    if path.endswith(".txt"):
        with open(path, encoding=encoding) as handle:
            return [line.rstrip("\n") for line in handle if line.strip()]
    frame = read_local(path, encoding)
    if text_column not in frame.columns:
        raise KeyError(
            f"Transfer file {path} has no text column '{text_column}' (columns: {list(frame.columns)}). Pass "
            "--text_column with the right name."
        )
    return ["" if v is None or v != v else str(v) for v in frame[text_column]]


def with_transfer_data(
    data: TextClassificationData,
    transfer: str | datasets.Dataset,
    text_column: str = TEXT,
    encoding: str = "utf-8",
    max_examples: int | None = None,
    seed: int = 0,
) -> TextClassificationData:
    """Replace the train split by unlabelled transfer text (a file, a Dataset's `text_column`, or a split of `data`
    whose labels are dropped).

    The labelled train split, if any, is kept as 'labelled_train' (never trained on by distillation)."""
    if isinstance(transfer, datasets.Dataset):
        if text_column not in transfer.column_names:
            raise KeyError(
                f"The transfer Dataset has no text column '{text_column}' (columns: {transfer.column_names}). Pass "
                "--text_column with the right name."
            )
        texts = [as_text(text) for text in column_values(transfer, text_column)]
        transfer = "a Dataset"  # for the messages below: it is never the 'train' split of `data`
    elif os.path.isfile(transfer):
        texts = read_unlabelled_texts(transfer, text_column, encoding)
    elif transfer in data.splits:
        texts = list(data.splits[transfer][TEXT])
    else:
        raise FileNotFoundError(
            f"--transfer_data '{transfer}' is neither a file nor a split of {data.name} (splits: {list(data.splits)})."
        )
    if not texts:
        raise ValueError(f"--transfer_data '{transfer}' holds no text.")
    if max_examples and max_examples < len(texts):
        keep = seeded_subset(len(texts), max_examples, seed)
        texts = [texts[i] for i in keep]
    splits = dict(data.splits)
    if "train" in splits and transfer != "train":
        splits["labelled_train"] = splits.pop("train")
    splits["train"] = datasets.Dataset.from_dict(
        {
            EXAMPLE_ID: np.arange(len(texts), dtype=np.int64),
            TEXT: texts,
            LABEL: np.full(len(texts), UNLABELLED, dtype=np.int64),
        }
    )
    logger.info("Transfer set: %d unlabelled texts from %s.", len(texts), transfer)
    shown = _shown(transfer) if transfer not in data.splits else f"split '{transfer}'"
    source = f"{data.source}; train replaced by {len(texts)} unlabelled texts from {shown}"
    return TextClassificationData(datasets.DatasetDict(splits), data.label_names, data.name, source)


def _shown(transfer: str) -> str:
    """A transfer file by its name (results never hold this machine's paths), else as given (a split, a Dataset)."""
    return os.path.basename(transfer) if os.path.isfile(transfer) else transfer


def carve_validation(data: TextClassificationData, size: int, seed: int = 0) -> TextClassificationData:
    """Move `size` labelled train rows (a seeded choice) into a new 'validation' split; train keeps the rest,
    re-numbered, so the teacher cache never contains a validation example."""
    if "validation" in data.splits:
        raise ValueError("The dataset already has a 'validation' split: drop --validation_from_train.")
    train = data.splits["train"]
    labelled = np.flatnonzero(np.asarray(train[LABEL]) >= 0)
    if size >= len(labelled):
        raise ValueError(
            f"--validation_from_train {size} needs more than {size} labelled train rows; the train split has "
            f"{len(labelled)}."
        )
    chosen = seeded_subset(labelled, size, seed)
    rest = np.setdiff1d(np.arange(len(train)), chosen)
    columns = [c for c in (TEXT, LABEL, FINE_LABEL) if c in train.column_names]

    def renumbered(rows: np.ndarray) -> datasets.Dataset:
        part = train.select(rows).select_columns(columns)
        return part.add_column(EXAMPLE_ID, np.arange(len(rows), dtype=np.int64)).select_columns([EXAMPLE_ID, *columns])

    splits = dict(data.splits)
    splits["train"], splits["validation"] = renumbered(rest), renumbered(chosen)
    return TextClassificationData(datasets.DatasetDict(splits), data.label_names, data.name, data.source)
