"""Mistakes in the user's input end as one paragraph and exit code 2; bugs keep their traceback.

Every recipe runs its `main(argv)` through `run_cli` (only under `if __name__ == "__main__":`, so tests that call
`main` directly still see the exceptions). `--debug` or HF_LELP_DEBUG=1 re-raises with the full traceback.
"""

from __future__ import annotations

import errno
import io
import json
import os
import sys
from collections.abc import Callable

import yaml

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


class UserError(ValueError):
    """A mistake in the user's input (a file, a flag, a config): the message says what, where and the fix."""


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


def _open_file_in_traceback(error: BaseException) -> str | None:
    """The name of the file being read where `error` was raised (e.g. json.load(handle) has no path of its own)."""
    frames, traceback = [], error.__traceback__
    while traceback is not None:
        frames.append(traceback.tb_frame)
        traceback = traceback.tb_next
    for frame in reversed(frames):  # innermost first
        for value in frame.f_locals.values():
            if isinstance(value, io.IOBase) and isinstance(getattr(value, "name", None), str):
                return value.name
    return None


def user_error_message(error: BaseException) -> str | None:
    """The paragraph to print for a user error, or None when `error` is a bug (its traceback is kept)."""
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        return error.strerror if error.strerror and not error.filename else str(error)
    if not isinstance(error, USER_ERRORS):
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
