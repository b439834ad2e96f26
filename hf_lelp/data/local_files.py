"""Local csv/tsv/json/jsonl/parquet files read with pandas; every problem with a file (missing, empty, header only,
not decodable, garbled) is an error that names the file and the flag that gave it."""

from __future__ import annotations

import codecs
import os

import pandas as pd

from hf_lelp.base.errors import UserError


def read_local(path: str, encoding: str = "utf-8", flag: str = "") -> pd.DataFrame:
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


def load_frames(source: str, data_files: dict[str, str] | None, encoding: str) -> dict[str, pd.DataFrame]:
    # Local files stay on pandas, not datasets' csv/json loaders: those wrap every parse error in a
    # DatasetGenerationError, need one schema for all splits (an unlabelled train file beside a labelled test file
    # fails), infer JSON types with pyarrow, and write an Arrow copy of each file under ~/.cache/huggingface.
    if data_files:
        return {split: read_local(path, encoding, file_flag(split)) for split, path in data_files.items()}
    return {"train": read_local(source, encoding, "--dataset")}


def file_flag(split: str) -> str:
    return f"--{split}_file" if split in ("train", "validation", "test") else f"split '{split}'"
