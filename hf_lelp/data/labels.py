"""Labels of text-classification splits: column checks and renames, missing and mixed label values, encoding to
the class ids of the label names, label names inferred from files."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from hf_lelp.base.errors import UserError
from hf_lelp.data.columns import FINE_LABEL, LABEL, TEXT, UNLABELLED
from hf_lelp.data.local_files import file_flag

logger = logging.getLogger(__name__)


def check_columns(
    columns: list[str],
    num_rows: int,
    split: str,
    text_column: str,
    label_column: str | None,
    fine_label_column: str | None = None,
) -> None:
    """The same errors for a file's table and for a Dataset: a missing text (or train label) column names the flag."""
    if not num_rows:  # local files are checked when read; this catches an empty split of a Dataset or Hub dataset
        raise UserError(f"Split '{split}' has no rows: check the dataset, or drop that split.")
    if text_column not in columns:
        raise KeyError(
            f"Split '{split}' has no text column '{text_column}' (columns: {columns}). "
            "Pass --text_column with the right name."
        )
    if label_column and label_column not in columns and split == "train":
        raise KeyError(
            f"Split '{split}' has no label column '{label_column}' (columns: {columns}). "
            "Pass --label_column with the right name, or --label_column '' for an unlabelled transfer set."
        )
    if fine_label_column and fine_label_column not in columns and split == "train":
        raise KeyError(
            f"Split '{split}' has no fine-label column '{fine_label_column}' (columns: {columns}). "
            "Pass --fine_label_column with the right name."
        )


def rename_columns(
    frame: pd.DataFrame, text_column: str, label_column: str | None, split: str, fine_label_column: str | None = None
) -> pd.DataFrame:
    check_columns(list(frame.columns), len(frame), split, text_column, label_column, fine_label_column)
    columns = {text_column: TEXT}
    if label_column and label_column in frame.columns:
        columns[label_column] = LABEL
    if fine_label_column:
        columns[fine_label_column] = FINE_LABEL
    frame = frame.rename(columns=columns)
    if LABEL not in frame.columns:
        frame[LABEL] = None
    return frame[[c for c in (TEXT, LABEL, FINE_LABEL) if c in frame.columns]]


def _is_missing(value) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _as_label(value):
    """An integral float (pandas reads an integer column with an empty cell as floats) as the int it was."""
    if isinstance(value, (float, np.floating)) and not np.isnan(value) and float(value).is_integer():
        return int(value)
    return value


def _is_number(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def check_missing_labels(values: list, split: str, where: str) -> None:
    """Some rows of a labelled split without a label: refused in an evaluation split (they would drop out of the
    metrics unseen); in train they are kept as unlabelled transfer rows, and said so."""
    missing = [row for row, value in enumerate(values) if _is_missing(value)]
    if not missing or len(missing) == len(values):  # none, or an unlabelled split (e.g. a Hub test split)
        return
    rows = [row + 1 for row in missing[:10]]
    source = where or f"split '{split}'"
    if split != "train":
        raise UserError(
            f"{source} has {len(missing)} of {len(values)} rows without a label (data rows {rows}, counted from 1 "
            "below the header): an evaluation split needs every label. Fill them in or drop those rows."
        )
    logger.warning(
        "%s: %d of %d rows have no label (data rows %s): kept as unlabelled transfer text (a teacher trains "
        "without them). Fill them in if that is a mistake.",
        source,
        len(missing),
        len(values),
        rows,
    )


def encode_labels(
    values: list, label_names: list[str], split: str, where: str = "", check_missing: bool = True
) -> np.ndarray:
    """Map raw labels (names or integer ids) onto 0..C-1; missing labels become UNLABELLED. `where` names the
    file (and flag) in errors."""
    if check_missing:
        check_missing_labels(values, split, where)
    values = [_as_label(value) for value in values]
    _check_label_types({split: values}, {split: where} if where else {}, label_names)
    index = {name: i for i, name in enumerate(label_names)}
    encoded = np.full(len(values), UNLABELLED, dtype=np.int64)
    unknown = set()
    for row, value in enumerate(values):
        if _is_missing(value):
            continue
        key = str(value)
        if key in index:
            encoded[row] = index[key]
        elif isinstance(value, (int, np.integer)) and 0 <= int(value) < len(label_names) and key not in index:
            encoded[row] = int(value)
        else:
            unknown.add(key)
    if unknown:
        raise ValueError(
            f"Split '{split}' has labels outside the label set {label_names}: {sorted(unknown)[:10]}. "
            "Fix the data or pass --class_names with every class."
        )
    return encoded


def _check_label_types(values: dict[str, list], where: dict[str, str], label_names: list[str] | None = None) -> None:
    """Names and numbers mixed in one label column ("neg", "pos" and 1) are a typo, not a third class "1"."""
    numbers, names, at = set(), set(), {}
    for split, column in values.items():
        for row, value in enumerate(column):
            if _is_missing(value):
                continue
            if _is_number(value) and str(value) not in (label_names or ()):
                numbers.add(value)
                at.setdefault(split, []).append(row + 1)
            elif isinstance(value, str):
                names.add(value)
    if not (numbers and names):
        return
    files = ", ".join(where.get(split, f"split '{split}'") for split in values)
    rows = "; ".join(f"{where.get(split, split)}: data rows {found[:10]}" for split, found in at.items())
    raise UserError(
        f"The labels of {files} mix class names {sorted(names)[:10]} with numbers {sorted(numbers)[:10]} ({rows}): "
        "one label column holds either names or integer ids. Write every label as a class name."
    )


def infer_label_names(
    frames: dict[str, pd.DataFrame], data_files: dict[str, str] | None = None, where: dict[str, str] | None = None
) -> list[str]:
    if not frames:  # no split has a label column: an unlabelled dataset
        return []
    where = where or {split: file_label(split, path) for split, path in (data_files or {}).items()}
    _check_label_types({split: [_as_label(v) for v in f[LABEL].tolist()] for split, f in frames.items()}, where)
    labels = pd.concat([f[LABEL] for f in frames.values()]).dropna().astype(object).map(_as_label)
    values = labels.unique().tolist()
    if values and all(isinstance(v, (int, np.integer)) for v in values):
        ids = sorted({int(v) for v in values})
        if ids != list(range(len(ids))):  # a typo (5 among 0/1) would silently add classes that never occur
            raise UserError(_non_contiguous_message(frames, ids, data_files or {}))
        return [str(i) for i in ids]
    return sorted(str(v) for v in values)


def _non_contiguous_message(frames: dict[str, pd.DataFrame], ids: list[int], data_files: dict[str, str]) -> str:
    # Values at or beyond the number of distinct ids (or negative) are the likely typos: show where they are.
    suspects = [i for i in ids if i < 0 or i >= len(ids)]
    parts, files = [], []
    for split, frame in frames.items():
        labels = frame[LABEL].dropna()
        if labels.empty:
            continue
        if split in data_files and data_files[split] not in files:
            files.append(data_files[split])
        counts = ", ".join(f"{value}: {count}" for value, count in sorted(labels.value_counts().items())[:20])
        rows = [int(r) + 1 for r in labels.index[labels.isin(suspects)][:5]]
        at = f" (label {'/'.join(map(str, suspects))} in data rows {rows})" if rows else ""
        parts.append(f"'{split}' has {counts}{at}")
    if ids[0] < 0:  # an empty cell, not -1, marks an unlabelled row
        gaps = f"labels {[i for i in ids if i < 0]} are negative (leave the label empty for an unlabelled row)"
    else:
        missing = sorted(set(range(max(ids) + 1)) - set(ids))
        gaps = f"ids {missing[:10]} never occur, so a {max(ids) + 1}-class model would be built"
    return (
        f"The integer labels of {', '.join(files) or 'the dataset'} are not the class ids 0..K-1: {gaps}. "
        f"Label counts: {'; '.join(parts)}. Fix the mislabelled rows "
        f"(data rows count from 1 below the header), or pass --class_names with one name per id 0..{max(ids)} if "
        "those classes are real."
    )


def file_label(split: str, path: str) -> str:
    return f"{path} ({file_flag(split)})"
