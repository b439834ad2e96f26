"""Issue #22 on the 2-core CPU: how much can any subclass method add? A student trained from scratch
(`--student_config tiny`), few labelled rows, every train row as the transfer set; the oracle (true fine labels as
subclasses) against KD, LELP and CE. See benchmarks/harness/ceiling.py for the protocol.

Stages (each resumable: finished runs are kept in a progress file; wall times in results/ceiling/stages.json):
    point   one labelled size of one dataset: teacher, cache, validation search, 3 seeds on test
    weight  at a finished point: λ, the within-class term's weight (--within_class_weight), for LELP and the oracle
    terms   why LELP trails KD on fine-tuned students: the within-class term's share of the loss and of its gradient
            over one LELP run of the fine-tuned track (a point's teacher, its first --rows train rows)
    sweep   S, β, τ and α on validation for the fine-tuned track, then the best of each family on test
    labels  users who have labels: KD and LELP with --hard_label_weight α > 0 against CE (tweets, strong study's
            MLP track at 29,294 transfer rows; prepares runs/strong/tweets/all-MiniLM-L6-v2 when missing)
    report  the "How much can subclasses add?" section of benchmarks/RESULTS.md and its plot

    python benchmarks/ceiling.py point --dataset 20newsgroups_binary --labelled 250
    python benchmarks/ceiling.py terms --folder runs/ceiling/20newsgroups_binary/labelled1000
    python benchmarks/ceiling.py report
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: benchmarks.harness

from benchmarks.strong_teacher import record_stage  # noqa: E402
from hf_lelp.base.io_utils import read_json, write_json_atomic  # noqa: E402

RESULTS_DIR = os.path.join("benchmarks", "results", "ceiling")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["point", "weight", "terms", "sweep", "labels", "report"])
    parser.add_argument("--dataset", default="20newsgroups_binary")
    parser.add_argument("--labelled", type=int, default=250, help="labelled train rows; 0: all of them")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2, help="students trained at once, one thread each")
    parser.add_argument("--methods", nargs="+", default=["ce", "kd", "lelp", "oracle", "kmeans", "random", "pca"])
    parser.add_argument("--validation", type=int, default=500)
    parser.add_argument("--test", type=int, default=1000)
    parser.add_argument("--max_train", type=int, default=0, help="0: every train row not in validation")
    parser.add_argument("--max_length", type=int, default=64)
    parser.add_argument("--work_dir", default=os.path.join("runs", "ceiling"))
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    parser.add_argument("--folder", default=os.path.join("runs", "ceiling", "20newsgroups_binary", "labelled1000"))
    parser.add_argument("--rows", type=int, default=2000, help="terms, sweep: transfer rows (the folder's first)")
    parser.add_argument("--every", type=int, default=10, help="terms: optimizer steps between measurements")
    parser.add_argument("--search", choices=["full", "smoke"], default="full", help="smoke: one value per knob")
    parser.add_argument("--report", default=os.path.join("benchmarks", "RESULTS.md"))
    parser.add_argument("--plots_dir", default=os.path.join("benchmarks", "plots"))
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    command = "python benchmarks/ceiling.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    os.makedirs(args.results_dir, exist_ok=True)
    start = time.time()
    if args.stage == "report":
        from benchmarks.harness.report import write_report

        write_report(os.path.dirname(os.path.abspath(args.results_dir)), args.report, args.plots_dir)
        return
    if args.stage == "point":
        from benchmarks.harness.ceiling import ceiling_point

        ceiling_point(args.dataset, args.labelled, args, command)
        record_stage(args.results_dir, f"point:{args.dataset}:{args.labelled or 'all'}", time.time() - start, command)
        return
    if args.stage == "weight":
        from benchmarks.harness.ceiling import weight_point

        weight_point(args.dataset, args.labelled, args, command)
        record_stage(args.results_dir, f"weight:{args.dataset}:{args.labelled or 'all'}", time.time() - start, command)
        return
    if args.stage == "labels":
        from benchmarks.harness.label_mix import DATASET, SIZE, TEACHER, label_mix

        result = label_mix(args, command)
        write_json_atomic(os.path.join(args.results_dir, f"labels_{DATASET}_{TEACHER}_n{SIZE}.json"), result)
        record_stage(args.results_dir, f"labels:{DATASET}:{TEACHER}", time.time() - start, command)
        return
    from benchmarks.harness import lelp_terms

    dataset = os.path.basename(os.path.dirname(os.path.normpath(args.folder)))
    if args.stage == "terms":
        with tempfile.TemporaryDirectory() as work:
            result = lelp_terms.terms_run(args.folder, args.rows, args.every, work)
    else:
        result = lelp_terms.sweep(args)
    teacher = os.path.basename(os.path.normpath(args.folder))
    from benchmarks.harness.machine import machine_info

    result.update(dataset=dataset, teacher_folder=teacher, command=command, machine=machine_info())
    path = f"{lelp_terms.stem_for(args.results_dir, args.folder)}_{args.stage}.json"
    # The sweep resumes run by run: its time is every invocation's (the terms stage always runs whole).
    earlier = read_json(path).get("wall_seconds", 0.0) if args.stage == "sweep" and os.path.isfile(path) else 0.0
    result["wall_seconds"] = earlier + time.time() - start
    write_json_atomic(path, result)
    record_stage(args.results_dir, f"{args.stage}:{dataset}:{teacher}", time.time() - start, command)


if __name__ == "__main__":
    main()
