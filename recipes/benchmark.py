"""Benchmark every distillation method on the offline datasets, several seeds, hyperparameters chosen on validation.

    python recipes/benchmark.py --datasets rotten_tomatoes tweets reuters8 20newsgroups_binary 20newsgroups_4class

Per dataset, once: train/validation/test files, a fine-tuned MiniLM-L6 teacher, its cache, frozen student features
(runs/benchmark/<dataset>/). Then per method: a validation search (benchmarks/harness/search.py), the chosen
configuration over --seeds on test, and LELP's S and β sweeps on --sweep_datasets. Writes
benchmarks/results/<dataset>.json, benchmarks/RESULTS.md and PNG plots in benchmarks/plots/. `--report_only` rebuilds
the report from the JSON files.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shlex
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# The harness is not part of the installed package: it lives in benchmarks/harness/ of the checkout this runs from.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from benchmarks.harness.prepare import PrepareOptions, prepare  # noqa: E402
from benchmarks.harness.report import write_report  # noqa: E402
from benchmarks.harness.runner import Pool, auto_compare, benchmark_dataset  # noqa: E402
from benchmarks.harness.search import PAPER_METHOD, SearchSpace  # noqa: E402
from hf_lelp.base.errors import run_cli  # noqa: E402
from hf_lelp.base.extras import require  # noqa: E402
from hf_lelp.base.io_utils import write_json_atomic  # noqa: E402
from hf_lelp.methods.registry import registered_methods  # noqa: E402

DATASETS = ("rotten_tomatoes", "tweets", "reuters8", "20newsgroups_binary", "20newsgroups_4class")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    methods = registered_methods()  # read now: a method registered before main() is benchmarked too
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS))
    parser.add_argument("--methods", nargs="+", default=list(methods), choices=methods)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--sweep_datasets", nargs="*", default=["rotten_tomatoes", "tweets"])
    parser.add_argument("--work_dir", default="runs/benchmark")
    parser.add_argument("--results_dir", default="benchmarks/results")
    parser.add_argument("--report", default="benchmarks/RESULTS.md")
    parser.add_argument("--plots_dir", default="benchmarks/plots")
    parser.add_argument("--workers", type=int, default=2, help="Parallel single-threaded student runs.")
    parser.add_argument("--train", type=int, default=PrepareOptions.train)
    parser.add_argument("--validation", type=int, default=PrepareOptions.validation)
    parser.add_argument("--test", type=int, default=PrepareOptions.test)
    parser.add_argument("--max_length", type=int, default=PrepareOptions.max_length)
    parser.add_argument("--teacher_epochs", type=float, default=PrepareOptions.teacher_epochs)
    parser.add_argument("--teacher_learning_rate", type=float, default=PrepareOptions.teacher_learning_rate)
    parser.add_argument(
        "--unlabelled_transfer",
        type=int,
        default=0,
        help="N > 0: the teacher learns from N labelled train rows; students distil on the train split without "
        "its labels (CE learns from the N labelled rows alone). Results go to <dataset>_unlabelled.json.",
    )
    parser.add_argument("--teacher_model", default=PrepareOptions.teacher_model)
    parser.add_argument("--feature_model", default=PrepareOptions.feature_model, help="Frozen student encoder.")
    parser.add_argument("--feature_layers", type=int, default=PrepareOptions.feature_layers)
    parser.add_argument("--train_file", help="Local labelled train file (with --test_file) instead of offline data.")
    parser.add_argument("--test_file")
    parser.add_argument("--fine_label_column", help="Fine-label column of the local files (for --methods oracle).")
    parser.add_argument(
        "--search", choices=("full", "smoke"), default="full", help="smoke: a tiny grid to check the machinery."
    )
    parser.add_argument(
        "--stages",
        nargs="+",
        choices=("benchmark", "auto_compare"),
        default=["benchmark", "auto_compare"],
        help="auto_compare: --auto_hparams' choice of S and β against the full search (needs the benchmark's JSON).",
    )
    parser.add_argument("--report_only", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    require("matplotlib", "explore", "The benchmark (its report's plots)")  # before hours of runs, not after
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    command = "python recipes/benchmark.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    if not args.report_only:
        # The flags of the same name (subset_seed has none), and --unlabelled_transfer as the teacher's rows.
        flags = {f.name: getattr(args, f.name) for f in dataclasses.fields(PrepareOptions) if hasattr(args, f.name)}
        options = PrepareOptions(**flags, teacher_train=args.unlabelled_transfer)
        files = {"train": args.train_file, "test": args.test_file} if args.train_file else None
        if files and (len(args.datasets) != 1 or not args.test_file):
            raise ValueError("--train_file needs --test_file and exactly one --datasets name for the local data.")
        space = SearchSpace.smoke() if args.search == "smoke" else SearchSpace()
        pool = Pool(args.workers)
        try:
            for name in args.datasets:
                prepared = prepare(name, args.work_dir, options, files, args.fine_label_column)
                suffix = "_unlabelled" if args.unlabelled_transfer else ""
                output_path = os.path.join(args.results_dir, f"{name}{suffix}.json")
                if "benchmark" in args.stages:
                    benchmark_dataset(
                        prepared,
                        args.methods,
                        args.seeds,
                        pool,
                        sweeps=name in args.sweep_datasets,
                        command=command,
                        output_path=output_path,
                        unlabelled=bool(args.unlabelled_transfer),
                        space=space,
                    )
                if "auto_compare" in args.stages and PAPER_METHOD in args.methods:
                    with open(output_path, encoding="utf-8") as handle:
                        result = json.load(handle)
                    result["auto_hparams"] = auto_compare(prepared, result, args.seeds, pool, space)
                    result["auto_hparams"]["command"] = command
                    write_json_atomic(output_path, result)
        finally:
            pool.close()
    write_report(args.results_dir, args.report, args.plots_dir)


if __name__ == "__main__":
    run_cli(main)
