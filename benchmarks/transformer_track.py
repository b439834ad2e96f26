"""The transformer-student track of the benchmark on the 2-core CPU: MiniLM truncated to 2 layers, fine-tuned by
`recipes/distill.py`'s job (run_distillation) with --method ce / kd / lelp, 3 seeds, on the prepared benchmark files
of one dataset (same train/test split and teacher as the MLP track).

Hyperparameters are not searched here (each run takes minutes): learning rate, epochs and batch are the demo's
(recipes/configs/distill_rotten_tomatoes.yaml); a method's other knobs (τ, S and β for LELP) are the values the MLP
track chose on validation for the same dataset (benchmarks/results/<dataset>.json). Writes
benchmarks/results/<dataset>_transformer_student.json.

    python benchmarks/transformer_track.py --dataset rotten_tomatoes
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import asdict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the checkout: benchmarks.harness

from benchmarks.harness.machine import machine_info  # noqa: E402
from benchmarks.harness.prepare import PreparedDataset  # noqa: E402
from benchmarks.harness.student_job import distill_student  # noqa: E402
from hf_lelp.base.io_utils import write_json_atomic  # noqa: E402
from hf_lelp.methods.registry import get_method, registered_methods  # noqa: E402
from hf_lelp.training.arguments import DataArguments, ModelArguments  # noqa: E402

# The demo config's training settings (recipes/configs/distill_rotten_tomatoes.yaml), for every method.
DEMO_SETTINGS = {"learning_rate": 3e-4, "num_train_epochs": 4, "per_device_train_batch_size": 32}


def mlp_choice(method: str, chosen: dict[str, dict], results_file: str) -> dict:
    """The knobs of `method` the MLP track chose on validation (its learning rate aside: the demo's is used here)."""
    if method not in chosen:
        if set(get_method(method).search) <= set(DEMO_SETTINGS):
            return {}  # nothing of its own to take (CE)
        raise ValueError(f"{results_file} has no {method} run: run the MLP track with --methods {method} first.")
    return {k: v for k, v in chosen[method].items() if k not in DEMO_SETTINGS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="rotten_tomatoes")
    parser.add_argument("--methods", nargs="+", default=["ce", "kd", "lelp"], choices=registered_methods())
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--work_dir", default="runs/benchmark")
    parser.add_argument("--results_dir", default="benchmarks/results")
    args = parser.parse_args(argv)
    folder = os.path.join(args.work_dir, args.dataset)
    prepared = asdict(PreparedDataset.load(folder))
    results_file = os.path.join(args.results_dir, f"{args.dataset}.json")
    with open(results_file, encoding="utf-8") as handle:
        mlp = json.load(handle)
    chosen = {}
    for run in mlp["runs"]:
        chosen.setdefault(run["method"], run["hparams"])
    runs = []
    for method in args.methods:
        for seed in args.seeds:
            hparams = {**DEMO_SETTINGS, **mlp_choice(method, chosen, results_file)}
            data_args = DataArguments(
                train_file=os.path.join(folder, "data", "train.jsonl"),
                test_file=os.path.join(folder, "data", "test.jsonl"),
                class_names=prepared["label_names"],
                max_length=prepared["options"]["max_length"],
            )
            model_args = ModelArguments(
                teacher=os.path.join(folder, "teacher"),
                student="all-MiniLM-L6-v2",
                student_num_layers=2,
                # The MLP track's cache: same teacher, data and max length, so the teacher does not run again.
                cache_dir=os.path.join(folder, "teacher_cache"),
            )
            output_dir = os.path.join(folder, "transformer_track", f"{method}-seed{seed}")
            results = distill_student(data_args, model_args, method, seed, hparams, output_dir=output_dir)
            runs.append(
                {
                    "method": method,
                    "seed": seed,
                    "accuracy": results["test_accuracy"],
                    "macro_f1": results["test_macro_f1"],
                    "hparams": hparams,
                    "train_seconds": results["train_seconds"],
                }
            )
            print(runs[-1], flush=True)
    result = {
        "dataset": args.dataset,
        "track": "transformer_student",
        "num_classes": len(prepared["label_names"]),
        "label_names": prepared["label_names"],
        "split_sizes": prepared["split_sizes"],
        "teacher": mlp["teacher"],
        "student": {"model": "all-MiniLM-L6-v2 truncated to 2 layers, fine-tuned (15.6M parameters)"},
        "runs": runs,
        "command": "python benchmarks/transformer_track.py " + shlex.join(sys.argv[1:] if argv is None else argv),
        "hparams_source": "lr/epochs/batch: the demo config; τ, S, β: the MLP track's validation choice",
        "machine": machine_info(),
    }
    write_json_atomic(os.path.join(args.results_dir, f"{args.dataset}_transformer_student.json"), result)


if __name__ == "__main__":
    main()
