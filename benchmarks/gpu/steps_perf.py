"""Step (3), steps.py perf: benchmarks/perf.py's GPU row groups through its own CLI."""

from __future__ import annotations

import os
import sys

from steps_common import MPNET, Deadline, log_dir, read_json, run_logged, set_status

# Step (3): perf.py's GPU row groups through its CLI (its CPU `memory` group is left to the CPU run).
PERF, PERF_MPNET_GROUP = "benchmarks/perf.py", "cached_vs_online_kd_mpnet"


# ----------------------------------------------------------------------------------------- step (3): perf rows
def perf_argv(out: str, group: str, teacher: str | None = None) -> list[str]:
    """benchmarks/perf.py's own CLI, one row group; its JSON and Markdown go to --out (rows of other groups kept)."""
    command = [sys.executable, PERF, "--only", group, "--output", os.path.join(out, "perf.json")]
    command += ["--markdown", os.path.join(out, "PERF.md")]
    return command + (["--teacher", teacher] if teacher else [])


def perf(work: str, out: str) -> int:
    """The `speed` rows (fp32 and bf16 on the GPU), then the big-teacher row when step (2) had mpnet."""
    deadline = Deadline(margin=5.0)
    track_result = read_json(os.path.join(out, "transformer_track.json"), {})
    teacher = track_result.get("teacher", {})
    mpnet_dir = None
    if teacher.get("model") == MPNET and teacher.get("chosen_learning_rate"):
        mpnet_dir = os.path.join(work, "track", f"teacher_lr{teacher['chosen_learning_rate']:g}")
    share = 0.55 if mpnet_dir else 1.0
    rc, seconds = run_logged(
        perf_argv(out, "speed"), os.path.join(log_dir(work), "perf_speed.log"), deadline.left() * share
    )
    statuses = [f"speed {'ok' if rc == 0 else f'exit {rc}'} ({seconds} s)"]
    if mpnet_dir:
        log = os.path.join(log_dir(work), "perf_mpnet.log")
        rc_big, seconds = run_logged(perf_argv(out, PERF_MPNET_GROUP, mpnet_dir), log, deadline.left())
        statuses.append(f"{PERF_MPNET_GROUP} {'ok' if rc_big == 0 else f'exit {rc_big}'} ({seconds} s)")
        rc = rc or rc_big
    else:
        statuses.append(f"{PERF_MPNET_GROUP} skipped: mpnet parts not carried")
    set_status(("ok: " if rc == 0 else "failed: ") + "; ".join(statuses))
    return rc
