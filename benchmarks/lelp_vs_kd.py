"""Issue #22 item 5 on the 2-core CPU: why LELP trails KD on fine-tuned students (benchmarks/harness/lelp_terms.py).

    python benchmarks/lelp_vs_kd.py terms --folder runs/ceiling/20newsgroups_binary/labelled1000
    python benchmarks/lelp_vs_kd.py sweep --folder runs/ceiling/20newsgroups_binary/labelled1000

The folder is a ceiling point (benchmarks/ceiling.py): its teacher, and the first --rows train rows as the transfer
set. Results: benchmarks/results/ceiling/lelp_vs_kd_<dataset>_<stage>.json; the sweep resumes run by run.
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

RESULTS_DIR = os.path.join("benchmarks", "results", "ceiling")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("stage", choices=["terms", "sweep"])
    parser.add_argument("--folder", default=os.path.join("runs", "ceiling", "20newsgroups_binary", "labelled1000"))
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--every", type=int, default=10, help="terms: optimizer steps between measurements")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--results_dir", default=RESULTS_DIR)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    args = parse_args(argv)
    command = "python benchmarks/lelp_vs_kd.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    from benchmarks.harness import lelp_terms
    from benchmarks.harness.machine import machine_info

    os.makedirs(args.results_dir, exist_ok=True)
    dataset = os.path.basename(os.path.dirname(os.path.normpath(args.folder)))
    path = os.path.join(args.results_dir, f"lelp_vs_kd_{dataset}_{args.stage}.json")
    start = time.time()
    if args.stage == "terms":
        with tempfile.TemporaryDirectory() as work:
            result = lelp_terms.terms_run(args.folder, args.rows, args.every, work)
    else:
        result = sweep(args, lelp_terms)
    result.update(
        dataset=dataset,
        teacher_folder=os.path.basename(os.path.normpath(args.folder)),
        command=command,
        machine=machine_info(),
        wall_seconds=time.time() - start,
    )
    lelp_terms.dump(path, result)
    record_stage(args.results_dir, f"lelp_vs_kd:{args.stage}:{dataset}", time.time() - start, command)


def sweep(args, lelp_terms) -> dict:
    from benchmarks.harness.search import select
    from benchmarks.harness.strong_transformer import Runs

    target = lelp_terms.prefix_folder(args.folder, args.rows)
    grid = lelp_terms.sweep_grid()
    runs = Runs(
        os.path.join(args.results_dir, f"lelp_vs_kd_{os.path.basename(target)}.progress.json"),
        args.workers,
        job=lelp_terms.sweep_job,
    )
    try:
        runs.run([(target, *grid[0], args.seeds[0], "validation")])  # alone: builds the teacher cache once
        trials = runs.run([(target, m, h, args.seeds[0], "validation") for m, h in grid])
        chosen = {}
        for name, keep in (
            ("ce", lambda r: r["method"] == "ce"),
            ("kd", lambda r: r["method"] == "kd" and "hard_label_weight" not in r["hparams"]),
            ("lelp", lambda r: r["method"] == "lelp" and "hard_label_weight" not in r["hparams"]),
            ("kd+labels", lambda r: r["method"] == "kd" and "hard_label_weight" in r["hparams"]),
            ("lelp+labels", lambda r: r["method"] == "lelp" and "hard_label_weight" in r["hparams"]),
        ):
            best = select([r for r in trials if keep(r)])
            chosen[name] = {"method": best["method"], "hparams": best["hparams"]}
        tests = runs.run(
            [(target, c["method"], c["hparams"], seed, "test") for c in chosen.values() for seed in args.seeds]
        )
    finally:
        runs.close()
    return {
        "settings": {**lelp_terms.FIXED, "transfer_rows": args.rows},
        "trials": trials,
        "chosen": chosen,
        "runs": tests,
    }


if __name__ == "__main__":
    main()
