"""Atomic writes and checksums: a file either is complete under its final name or does not exist there."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from contextlib import contextmanager


@contextmanager
def atomic_path(final_path: str):
    """Yield a temporary path in the same folder; on success rename it over `final_path` (atomic on POSIX).

    On any error the temporary file is removed and an existing `final_path` is left untouched.
    """
    folder = os.path.dirname(os.path.abspath(final_path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(final_path), dir=folder)
    os.close(fd)
    os.chmod(tmp_path, 0o666 & ~UMASK)  # mkstemp makes it 0600; the final file gets the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp_path, final_path)
    except BaseException as error:
        if os.path.exists(tmp_path):
            os.remove(tmp_path)
        if is_no_space(error):
            raise no_space_error(final_path) from error
        raise


# How a full disk reads when it does not arrive as OSError(ENOSPC): safetensors raises SafetensorError with the
# Rust io::Error in its text ("... No space left on device (os error 28)", or "StorageFull" in its debug form).
NO_SPACE_TEXTS = ("No space left on device", "StorageFull", "os error 28")


def is_no_space(error: BaseException) -> bool:
    """Whether `error` is a full disk, whatever library raised it."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return True
    return any(text in str(error) for text in NO_SPACE_TEXTS)


def no_space_error(final_path: str) -> OSError:
    """The one ENOSPC message (raise it `from` the original): which file, whether a previous complete one survives."""
    kept = "the previous complete file is intact" if os.path.exists(final_path) else "nothing was written"
    return OSError(
        errno.ENOSPC,
        f"No space left on device while writing {final_path} ({kept}). Free space and rerun: finished work is kept "
        "and resumed.",
    )


def write_atomic(final_path: str, write: Callable[[str], None]) -> None:
    with atomic_path(final_path) as tmp_path:
        write(tmp_path)


def write_json_atomic(final_path: str, payload: dict) -> None:
    def dump(path: str) -> None:
        with open(path, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)

    write_atomic(final_path, dump)


def read_json(path: str) -> dict:
    """Parse a JSON file this project wrote (cache meta, markers, results); a garbled one is named with the fix."""
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        where = f" at line {error.lineno}, column {error.colno}" if isinstance(error, json.JSONDecodeError) else ""
        raise ValueError(
            f"{path} is not valid JSON{where} (a damaged or hand-edited file). Delete it (for a cache: its folder) "
            "to rebuild it."
        ) from error


def sha256_file(path: str, chunk_size: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_tensors(*tensors) -> str:
    digest = hashlib.sha256()
    for tensor in tensors:
        digest.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


UMASK = _read_umask()  # read once at import: os.umask() sets it while reading, which threads must not see
