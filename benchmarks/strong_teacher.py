"""Issue #14, on the 2-core CPU: where does LELP beat KD? A strong teacher (all-mpnet-base-v2 fine-tuned), two
student tracks, transfer sets of growing size, and the paper's C·S student head against ours.

Stages (each resumable: a finished step is skipped; wall times go to benchmarks/results/strong/stages.json):
    prepare      teacher chosen on validation (learning rate, epochs), its cache, nested transfer sets
    mlp_curve    MLP track (frozen MiniLM-2 features) at every transfer size: validation search, 3 seeds on test
    transformer  trainable 2-layer MiniLM student, fine-tuned end to end, at the given sizes
    report       the "When does LELP help?" section of benchmarks/RESULTS.md and the learning-curve plot

    python benchmarks/strong_teacher.py prepare --dataset rotten_tomatoes --teacher all-mpnet-base-v2
    python benchmarks/strong_teacher.py mlp_curve --dataset rotten_tomatoes --teacher all-mpnet-base-v2
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: benchmarks.harness

from benchmarks.harness.strong import StrongOptions, prepare_strong  # noqa: E402
from hf_lelp.base.io_utils import write_json_atomic  # noqa: E402

RESULTS_DIR = os.path.join("benchmarks", "results", "strong")
STAGES_FILE = "stages.json"


def record_stage(results_dir: str, key: str, seconds: float, command: str) -> None:
    """Wall time of a stage: every run of it is kept (a resumed stage has several; a rerun of a finished one
    costs seconds), and `wall_seconds` is their sum."""
    path = os.path.join(results_dir, STAGES_FILE)
    stages = {}
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            stages = json.load(handle)
    entry = stages.get(key, {})
    runs = entry.get("runs", [entry] if entry else [])
    runs.append({"wall_seconds": round(seconds, 1), "command": command, "finished": time.strftime("%F %T")})
    stages[key] = {"wall_seconds": round(sum(r["wall_seconds"] for r in runs), 1), "command": command, "runs": runs}
    write_json_atomic(path, stages)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["prepare", "mlp_curve", "transformer", "report"])
    parser.add_argument("--dataset", default="rotten_tomatoes")
    parser.add_argument("--teacher", default="all-mpnet-base-v2")
    parser.add_argument("--sizes", nargs="+", type=int, default=[1000, 3000, 10000, 30000])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["ce", "kd", "lelp", "random", "pca"])
    parser.add_argument("--teacher_rows", type=int, default=2000)
    parser.add_argument("--teacher_max_epochs", type=int, default=0, help="0: the teacher's default (strong.py)")
    parser.add_argument("--teacher_learning_rates", nargs="+", type=float, default=[], help="[]: the default grid")
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--max_train", type=int, default=0, help="0: every train row not in validation")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--work_dir", default=os.path.join("runs", "strong"))
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--search", choices=["full", "smoke"], default="full", help="smoke: one value per knob")
    parser.add_argument("--report", default=os.path.join("benchmarks", "RESULTS.md"))
    parser.add_argument("--plots_dir", default=os.path.join("benchmarks", "plots"))
    return parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> StrongOptions:
    return StrongOptions(
        teacher_model=args.teacher,
        teacher_rows=args.teacher_rows,
        teacher_max_epochs=args.teacher_max_epochs,
        teacher_learning_rates=tuple(args.teacher_learning_rates),
        validation=args.validation,
        test=args.test,
        max_train=args.max_train,
        max_length=args.max_length,
        transfer_sizes=tuple(args.sizes),
    )


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    command = "python benchmarks/strong_teacher.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    start = time.time()
    os.makedirs(args.results_dir, exist_ok=True)
    if args.stage == "report":  # RESULTS.md from every committed result file, this study's section included
        from benchmarks.harness.report import write_report

        write_report(os.path.dirname(os.path.abspath(args.results_dir)), args.report, args.plots_dir)
        return
    transfer_sets = prepare_strong(args.dataset, args.work_dir, options_from(args))
    if args.stage == "mlp_curve":
        from benchmarks.harness.curve import mlp_curve

        mlp_curve(transfer_sets, args, command)
    elif args.stage == "transformer":
        from benchmarks.harness.strong_transformer import transformer_track

        transformer_track(transfer_sets, args, command)
    key = f"{args.stage}:{args.dataset}:{args.teacher}" + (
        f":{'-'.join(map(str, args.sizes))}" if args.stage != "prepare" else ""
    )
    record_stage(args.results_dir, key, time.time() - start, command)


if __name__ == "__main__":
    main()
