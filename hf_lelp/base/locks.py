"""One run at a time per folder: an advisory lock (flock) on `output_dir` and on a teacher cache being built.

flock is released by the kernel when the holder dies (even by SIGKILL), so a stale lock never blocks a rerun.
The lock file is owner-only, records no secret (token values are masked), and is removed when the holder leaves:
it is unlinked while still locked, and an acquirer that locked a file since unlinked (or replaced) tries again.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import sys
import time
from contextlib import contextmanager

LOCK_FILE = ".hf_lelp.lock"


class FolderInUseError(RuntimeError):
    """Another live hf-lelp process holds the folder."""


MASK = "<masked>"
# A Hub token's shape, masked wherever it appears on the command line (e.g. a value given to a misspelt flag).
TOKEN_PATTERN = re.compile(r"hf_[A-Za-z0-9]{8,}")


def _is_token_flag(arg: str) -> bool:
    return arg.startswith("-") and "token" in arg.partition("=")[0].lower()


def public_command(argv: list[str]) -> str:
    """The command line as a lock file records it: the value of every flag named *token* masked, in both the
    `--flag value` and `--flag=value` forms, and anything shaped like a Hub token."""
    shown = []
    for i, arg in enumerate(argv):
        if _is_token_flag(arg) and "=" in arg:
            arg = f"{arg.partition('=')[0]}={MASK}"
        elif i > 0 and _is_token_flag(argv[i - 1]) and "=" not in argv[i - 1] and not arg.startswith("--"):
            arg = MASK
        shown.append(TOKEN_PATTERN.sub(MASK, arg))
    return " ".join(shown)


def _lock_file(path: str) -> int:
    """An fd holding the flock of the file now at `path` (created owner-only); OSError(EWOULDBLOCK) when held."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # its holder unlinked this file before we locked it: lock the one at `path` now


def _holder(path: str) -> str:
    try:
        with open(path, "rb") as handle:
            # Masked again: a lock file written by an older hf-lelp held the command line as it was.
            return TOKEN_PATTERN.sub(MASK, handle.read(4096).decode(errors="replace").strip()) or "unknown process"
    except OSError:  # gone (its holder just left) or not readable by us (another user's owner-only lock)
        return "unknown process"


@contextmanager
def exclusive_folder(folder: str, what: str):
    """Hold `folder` for this process; a second holder is refused with the first one named (pid, host, command)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    try:
        fd = _lock_file(path)
    except OSError as error:
        if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise
        raise FolderInUseError(
            f"The {what} {folder} is in use by another hf-lelp run ({_holder(path)}). Wait for it to finish, or "
            "pass another folder."
        ) from None
    try:
        if os.fstat(fd).st_uid == os.getuid():
            os.fchmod(fd, 0o600)  # a lock file left by an older hf-lelp was world-readable
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        info["command"] = public_command(sys.argv)[:300]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        # Unlinked while still locked: an acquirer that opened it meanwhile sees the inode change and retries.
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
        os.close(fd)  # releases the lock
