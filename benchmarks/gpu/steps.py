"""The Python side of benchmarks/gpu/run.sh (issue #14 part 5): one subcommand per step of the GPU run.

    python benchmarks/gpu/steps.py pack-assets --dest benchmarks/gpu/carry/assets   # here, by fetch_wheels.sh
    python benchmarks/gpu/steps.py unpack-assets --carry DIR --site DIR             # on the device, by run.sh
    python benchmarks/gpu/steps.py {env,dist-prepare,dist,track,perf,summary} ...   # on the device, by run.sh

Everything a subcommand writes goes under --out (results) or --work (scratch); run.sh points both outside the
checkout on the device. The code of each step lies in the steps_*.py modules next to this file; the command lines
it runs are built by their *_argv functions, which tests/test_gpu_script.py checks against the recipes' own argument
parsers. Heavy imports (torch, transformers, hf_lelp) happen inside the subcommands, so `summary` and the argv
builders load fast anywhere.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.append(os.path.dirname(os.path.abspath(__file__)))  # the steps_*.py modules, also when loaded by path

from steps_assets import pack_assets, unpack_assets
from steps_common import CACHE_TEACHER, DISTILL, ROOT, STEPS, TRAIN_TEACHER
from steps_dist import (
    ACCELERATE_CONFIGS,
    ACCELERATE_LAUNCH,
    DIST_BATCH,
    DIST_EPOCHS,
    DIST_FINAL_STEP,
    DIST_RESUME_FROM,
    DIST_SAVE_STEPS,
    dist,
    dist_argv,
    dist_prepare,
    export_check,
    export_check_argv,
    tiny_project,
)
from steps_env import environment
from steps_perf import PERF, PERF_MPNET_GROUP, perf, perf_argv
from steps_summary import summary
from steps_track import (
    DEFAULT_METHODS,
    DEFAULT_SEEDS,
    MLP_RESULTS,
    aggregate,
    cache_argv,
    student_argv,
    student_hparams,
    teacher_argv,
    track,
    track_worker,
)

# What tests/test_gpu_script.py reads through this module (it loads steps.py by path).
__all__ = [
    "ACCELERATE_CONFIGS", "ACCELERATE_LAUNCH", "CACHE_TEACHER", "DEFAULT_METHODS", "DIST_BATCH", "DIST_EPOCHS",
    "DIST_FINAL_STEP", "DIST_RESUME_FROM", "DIST_SAVE_STEPS", "DISTILL", "MLP_RESULTS", "PERF", "PERF_MPNET_GROUP",
    "ROOT", "STEPS", "TRAIN_TEACHER", "aggregate", "build_parser", "cache_argv", "dist_argv", "export_check_argv",
    "main", "perf_argv", "student_argv", "student_hparams", "teacher_argv", "tiny_project",
]  # fmt: skip


# --------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pack-assets").add_argument("--dest", required=True)
    unpack = sub.add_parser("unpack-assets")
    unpack.add_argument("--carry", required=True)
    unpack.add_argument("--site", required=True)
    sub.add_parser("env").add_argument("--out", required=True)
    sub.add_parser("dist-prepare").add_argument("--work", required=True)
    dist_parser = sub.add_parser("dist")
    dist_parser.add_argument("--backend", choices=sorted(ACCELERATE_CONFIGS), required=True)
    check = sub.add_parser("export-check")
    check.add_argument("--model", required=True)
    check.add_argument("--test_csv", required=True)
    check.add_argument("--text_column", default="text")
    check.add_argument("--label_column", default="label")
    track_parser = sub.add_parser("track")
    track_parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    track_parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    track_parser.add_argument("--hparams_file", default=os.environ.get("GPU_TRACK_HPARAMS") or None)
    worker = sub.add_parser("track-worker")
    worker.add_argument("--method", required=True)
    worker.add_argument("--seeds", nargs="+", type=int, required=True)
    worker.add_argument("--teacher_dir", required=True)
    worker.add_argument("--cache_dir", required=True)
    worker.add_argument("--hparams", required=True)
    sub.add_parser("perf")
    summary_parser = sub.add_parser("summary")
    summary_parser.add_argument("--budget", type=float, default=0.0)
    summary_parser.add_argument("--started", type=float, default=time.time())
    for name in ("dist", "track", "track-worker", "perf", "summary"):
        sub.choices[name].add_argument("--work", required=True)
    for name in ("dist", "track", "perf", "summary"):
        sub.choices[name].add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pack-assets":
        pack_assets(args.dest)
        return 0
    if args.command == "unpack-assets":
        return unpack_assets(args.carry, args.site)
    if args.command == "env":
        return environment(args.out)
    if args.command == "dist-prepare":
        return dist_prepare(args.work)
    if args.command == "dist":
        return dist(args.backend, args.work, args.out)
    if args.command == "export-check":
        return export_check(args.model, args.test_csv, args.text_column, args.label_column)
    if args.command == "track":
        return track(args.work, args.out, args.methods, args.seeds, args.hparams_file)
    if args.command == "track-worker":
        hparams = json.loads(args.hparams)
        return track_worker(args.work, args.method, args.seeds, args.teacher_dir, args.cache_dir, hparams)
    if args.command == "perf":
        return perf(args.work, args.out)
    return summary(args.work, args.out, args.budget, args.started)


if __name__ == "__main__":
    sys.exit(main())
