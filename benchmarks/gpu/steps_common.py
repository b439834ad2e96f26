"""Shared by the steps of benchmarks/gpu/steps.py: paths, JSON files, the status line, the time limit, logs."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = os.path.relpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "steps.py"), ROOT)
DISTILL = "recipes/distill.py"
TRAIN_TEACHER = "recipes/train_teacher.py"
CACHE_TEACHER = "recipes/cache_teacher.py"
MINILM, MPNET = "all-MiniLM-L6-v2", "all-mpnet-base-v2"


# ------------------------------------------------------------------------------------------------------ helpers
def write_json(path: str, payload) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
    os.replace(temporary, path)


def read_json(path: str, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def set_status(text: str) -> None:
    """The step's status line in summary.json (run.sh reads it instead of deriving one from the exit code)."""
    path = os.environ.get("GPU_STEP_STATUS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text.replace("\n", " ") + "\n")
    print(f"status: {text}", flush=True)


class Deadline:
    """The step's time limit (run.sh exports GPU_STEP_TIMEOUT_S), less a margin to write the results."""

    def __init__(self, margin: float = 15.0):
        self.end = time.time() + float(os.environ.get("GPU_STEP_TIMEOUT_S", "600")) - margin

    def left(self) -> float:
        return max(0.0, self.end - time.time())


def run_logged(command: list[str], log_path: str, timeout: float, env: dict | None = None) -> tuple[int, float]:
    """(exit code, seconds); 124 when the command ran past `timeout` (its whole process group is killed)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            rc = process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = 124
    return rc, round(time.time() - start, 1)


def log_dir(work: str) -> str:
    return os.path.join(work, "logs")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()
