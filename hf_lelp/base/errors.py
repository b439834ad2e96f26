"""Mistakes in the user's input, and the machine's state, end as one paragraph and exit code 2; bugs keep their
traceback.

Every recipe runs its `main(argv)` through `run_cli` (only under `if __name__ == "__main__":`, so tests that call
`main` directly still see the exceptions). `--debug` or HF_LELP_DEBUG=1 re-raises with the full traceback.

The contract: every exception class defined in hf_lelp is one a user can act on (a folder in use, a refused push, a
cache of other inputs...), so `run_cli` prints any of them as a user error; bugs raise built-in classes. A full disk
is one too, whichever library hit it (OSError, safetensors' SafetensorError, PyTorch's zip writer).
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import sys
from collections.abc import Callable

import yaml

from hf_lelp.base.io_utils import is_no_space

DEBUG_FLAG = "--debug"
DEBUG_ENV = "HF_LELP_DEBUG"
EXIT_CODE = 2  # argparse's code for a usage error
# TrainingArguments has a `--debug` flag of its own that takes these values: `--debug underflow_overflow` is kept.
TRAINER_DEBUG_VALUES = {"underflow_overflow", "tpu_metrics_debug"}
# Exceptions that (in this project) mean bad input: data, flags, config files, paths, the disk, a diverged run.
USER_ERRORS = (
    ValueError,  # includes UserError, cache mismatch/corruption, UnicodeDecodeError, json.JSONDecodeError
    KeyError,
    FileNotFoundError,
    NotADirectoryError,
    IsADirectoryError,
    PermissionError,
    FloatingPointError,
    yaml.YAMLError,
)


PACKAGE = __name__.split(".")[0]
# PyTorch's zip writer (torch.save: a checkpoint's optimizer.pt) reports a failed write without its errno.
TORCH_WRITE_FAILURES = ("inline_container.cc", "PytorchStreamWriter failed writing", "iostream error")
# Local names under which the writing functions hold their target: torch.save(obj, f), save_file(t, filename).
WRITTEN_FILE_LOCALS = ("f", "filename", "final_path", "path")
DISK_REFUSALS = {
    errno.ENOSPC: "No space left on device",
    errno.EDQUOT: "Disk quota exceeded",
    errno.EFBIG: "File too large",  # a file-size limit (ulimit -f, or the file system's)
}


class UserError(ValueError):
    """A mistake in the user's input (a file, a flag, a config): the message says what, where and the fix."""


class StateError(RuntimeError):
    """The machine's or a folder's state stops the run (nothing is wrong with the input): the message says what to
    change."""


def _debug_requested(argv: list[str]) -> tuple[bool, list[str]]:
    """(debug?, argv without our `--debug`); the Trainer's own `--debug <option>` stays in argv."""
    kept, debug = [], os.environ.get(DEBUG_ENV, "").strip().lower() not in ("", "0", "false", "no")
    for i, arg in enumerate(argv):
        following = argv[i + 1] if i + 1 < len(argv) else ""
        if arg == DEBUG_FLAG and not (following and set(following.split()) <= TRAINER_DEBUG_VALUES):
            debug = True
        else:
            kept.append(arg)
    return debug, kept


def _frames_innermost_first(error: BaseException) -> list:
    frames, traceback = [], error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    return frames[::-1]


def _open_file_in_traceback(error: BaseException) -> str | None:
    """The name of the file being read where `error` was raised (e.g. json.load(handle) has no path of its own)."""
    for frame in _frames_innermost_first(error):
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
    return None


def defined_here(error_class: type) -> bool:
    """Whether `error_class` (or a class it derives from) is one of hf-lelp's own: all of them are user errors."""
    return any(cls.__module__.split(".")[0] == PACKAGE for cls in error_class.__mro__)


def _chain(error: BaseException) -> list[BaseException]:
    """`error` and the exceptions it was raised from or while handling, outermost first."""
    chain = [error]
    while len(chain) < 16 and (cause := chain[-1].__cause__ or chain[-1].__context__) is not None:
        chain.append(cause)
    return chain


def _written_file(error: BaseException) -> str | None:
    """The file a failed write was writing, read from the writing function's frame (torch.save's `f`,
    safetensors' `filename`), innermost first."""
    for frame in _frames_innermost_first(error):
        for name in WRITTEN_FILE_LOCALS:
            value = frame.f_locals.get(name)
            if not isinstance(value, str | os.PathLike):
                continue
            value = os.fspath(value)
            # A path (it names a folder that exists), not some other string that happens to be called `f`.
            if os.sep in value and os.path.isdir(os.path.dirname(os.path.abspath(value))):
                return value
    return None


def _free_space(path: str) -> str:
    try:
        free = shutil.disk_usage(os.path.dirname(os.path.abspath(path))).free
    except OSError:
        return "unknown"
    return f"{free / 2**20:.1f} MiB" if free >= 2**20 else f"{free} bytes"


def _disk_refusal(error: BaseException) -> str | None:
    """Why the disk refused a write (a full disk, a quota, a file-size limit), whichever library raised it."""
    if isinstance(error, OSError) and error.errno in DISK_REFUSALS:
        return DISK_REFUSALS[error.errno]
    if is_no_space(error):
        return DISK_REFUSALS[errno.ENOSPC]
    text = str(error)  # safetensors' SafetensorError carries the Rust io::Error as text
    return next((why for code, why in DISK_REFUSALS.items() if why in text or f"os error {code}" in text), None)


def disk_error_message(error: BaseException) -> str | None:
    """The paragraph for a write the disk refused (or PyTorch's writer could not finish); else None."""
    chain = _chain(error)
    refused = next((e for e in chain if _disk_refusal(e)), None)
    torch_write = next((e for e in chain if any(text in str(e) for text in TORCH_WRITE_FAILURES)), None)
    if refused is None and torch_write is None:
        return None
    if isinstance(refused, OSError) and refused.strerror and "while writing" in refused.strerror:
        return refused.strerror  # io_utils.no_space_error: already names the file and what survived
    path = _written_file(error)
    where = f"writing {path}" if path else "writing a file"
    advice = (
        "Free space (or pass an --output_dir / --cache_dir on a larger disk) and rerun: a teacher cache's finished "
        "shards are kept, and --resume_from_checkpoint true resumes from the last complete checkpoint."
    )
    if refused is not None:
        return f"{_disk_refusal(refused)} while {where}. {advice}"
    detail = str(torch_write).strip().splitlines()[0]
    free = f" Its disk has {_free_space(path)} free." if path else ""
    return f"PyTorch failed {where} ({detail}): the disk is most likely full.{free} {advice}"


def user_error_message(error: BaseException) -> str | None:
    """The paragraph to print for a user error, or None when `error` is a bug (its traceback is kept)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return error.strerror if error.strerror and not error.filename else str(error)
    disk = disk_error_message(error)
    if disk is not None:
        return disk
    if not isinstance(error, USER_ERRORS) and not defined_here(type(error)):
        return None
    if isinstance(error, KeyError):  # str(KeyError) wraps the message in quotes
        return str(error.args[0]) if error.args else "KeyError"
    if isinstance(error, json.JSONDecodeError):
        where = _open_file_in_traceback(error)
        source = f"{where} is not valid JSON" if where else "A JSON file is not valid JSON"
        return f"{source}: {error.msg} at line {error.lineno}, column {error.colno}. Fix or delete the file."
    if isinstance(error, UnicodeDecodeError):
        where = _open_file_in_traceback(error)
        return (
            f"{where or 'A file'} is not valid {error.encoding} ({error.reason} at byte {error.start}). "
            "Pass --encoding with the file's encoding (e.g. latin-1), or re-encode it as UTF-8."
        )
    if isinstance(error, OSError) and error.strerror and error.filename:  # raised by open(): "[Errno 2] ..."
        names = " -> ".join(str(n) for n in (error.filename, error.filename2) if n)
        return f"{error.strerror}: {names}"
    message = str(error).strip()
    return message or type(error).__name__


def run_cli(main: Callable[[list[str]], object], argv: list[str] | None = None) -> object:
    """Run a recipe's `main(argv)`; a user error prints `hf-lelp: error: ...` to stderr and exits with code 2."""
    debug, argv = _debug_requested(list(sys.argv[1:] if argv is None else argv))
    try:
        return main(argv)
    except BaseException as error:
        message = None if debug else user_error_message(error)
        if message is None:
            raise
        lines = [f"hf-lelp: error: {message}"]
        if os.environ.get("RANK", "0") == "0":  # the other processes of a launch print the same error, no more
            lines.append(f"(run with {DEBUG_FLAG} or {DEBUG_ENV}=1 for the traceback)")
        sys.stdout.flush()
        print("\n".join(lines), file=sys.stderr, flush=True)
        raise SystemExit(EXIT_CODE) from None
