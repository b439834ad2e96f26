"""steps.py summary: summary.json, every step's status and the headline of each result file."""

from __future__ import annotations

import json
import os
import time

from steps_common import read_json, write_json


# ------------------------------------------------------------------------------------------------------ summary
def summary(work: str, out: str, budget: float, started: float) -> int:
    """summary.json: every step's status and wall seconds, and the headline of each result file."""
    steps = []
    path = os.path.join(work, "steps.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    steps.append(json.loads(line))
                except ValueError:
                    steps.append({"unparsed": line.strip()})
    results: dict = {}
    env = read_json(os.path.join(out, "env.json"))
    if env:
        results["device"] = (env.get("cuda") or {}).get("device")
        results["versions"] = env.get("versions")
    distributed = read_json(os.path.join(out, "distributed.json"))
    if distributed:
        results["distributed"] = {backend: record.get("status") for backend, record in distributed.items()}
    track_result = read_json(os.path.join(out, "transformer_track.json"))
    if track_result:
        teacher = track_result.get("teacher", {})
        results["transformer_track"] = {
            "status": track_result.get("status"),
            "teacher": {k: teacher.get(k) for k in ("model", "mpnet", "chosen_learning_rate", "test_accuracy")},
            "methods": track_result.get("methods"),
            "gaps": track_result.get("gaps"),
        }
    perf_rows = read_json(os.path.join(out, "perf.json"))
    if isinstance(perf_rows, list):  # perf.py's own format: a list of rows
        results["perf"] = [{k: row.get(k) for k in ("name", "value", "unit", "device")} for row in perf_rows]
    payload = {
        "issue": "#14 part 5: the prepared GPU run",
        "script": "benchmarks/gpu/run.sh",
        "budget_s": budget,
        "elapsed_s": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "steps": steps,
        "results": results,
    }
    write_json(os.path.join(out, "summary.json"), payload)
    return 0
