"""One run at a time per folder: an advisory lock (flock) on `output_dir` and on a teacher cache being built.

flock is released by the kernel when the holder dies (even by SIGKILL), so a stale lock never blocks a rerun.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import sys
import time
from contextlib import contextmanager

LOCK_FILE = ".hf_lelp.lock"


class FolderInUseError(RuntimeError):
    """Another live hf-lelp process holds the folder."""


@contextmanager
def exclusive_folder(folder: str, what: str):
    """Hold `folder` for this process; a second holder is refused with the first one named (pid, host, command)."""
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, LOCK_FILE)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            holder = os.pread(fd, 4096, 0).decode(errors="replace").strip() or "unknown process"
            raise FolderInUseError(
                f"The {what} {folder} is in use by another hf-lelp run ({holder}). Wait for it to finish, or pass "
                f"another folder."
            ) from None
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        info["command"] = " ".join(sys.argv)[:300]
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
