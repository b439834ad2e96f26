"""Precision: bf16 vs fp32 training of the default student (3 seeds each), and float16/bfloat16 caches vs float32.

    .venv/bin/python benchmarks/precision.py     # needs the demo teacher (make demo, or recipes/train_teacher.py)

Writes benchmarks/results/precision.json and benchmarks/PRECISION.md. On a CPU the bf16 runs use CPU autocast;
fp16 autocast is measured only where a GPU is available.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile

import torch
from accelerate import Accelerator
from transformers import AutoModelForSequenceClassification, AutoTokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

import distill  # noqa: E402

from hf_lelp import build_teacher_cache, fit_projections  # noqa: E402
from hf_lelp.methods.losses import lelp_targets  # noqa: E402
from hf_lelp.methods.projections import FitOptions  # noqa: E402
from hf_lelp.training.arguments import DataArguments  # noqa: E402
from hf_lelp.training.job_data import load_data  # noqa: E402

CONFIG = os.path.join(ROOT, "recipes", "configs", "distill_rotten_tomatoes.yaml")
TEACHER = os.path.join(ROOT, "runs", "demo", "teacher")
COMMAND = "python benchmarks/precision.py"
SEEDS = (0, 1, 2)


def training_runs(work: str) -> list[dict]:
    precisions = [("fp32", [])] + [("bf16", ["--bf16", "true"])]
    if torch.cuda.is_available():
        precisions.append(("fp16", ["--fp16", "true"]))
    cpu = [] if torch.cuda.is_available() else ["--use_cpu", "true"]
    rows = []
    for seed in SEEDS:
        for name, flags in precisions:
            out = os.path.join(work, f"{name}-{seed}")
            results = distill.main(
                [
                    CONFIG,
                    "--output_dir",
                    out,
                    "--seed",
                    str(seed),
                    "--teacher",
                    TEACHER,
                    "--cache_dir",
                    os.path.join(work, "cache"),
                    "--disable_tqdm",
                    "true",
                    *cpu,
                    *flags,
                ]
            )
            rows.append(
                {
                    "precision": name,
                    "seed": seed,
                    "accuracy": results["test_accuracy"],
                    "macro_f1": results["test_macro_f1"],
                    "train_seconds": results["train_seconds"],
                }
            )
            shutil.rmtree(out)
    return rows


def cache_dtype_effect(work: str) -> list[dict]:
    """Max |target difference| between a float16/bfloat16 cache and a float32 one, same teacher and data."""
    data = load_data(DataArguments(max_train_examples=2000, max_length=64))
    teacher = AutoModelForSequenceClassification.from_pretrained(TEACHER)
    tokenizer = AutoTokenizer.from_pretrained(TEACHER)
    # An explicit float32 teacher pass: a default Accelerator() would inherit the mixed precision of an earlier
    # bf16 run in this process, and every cache would then hold bf16-rounded embeddings.
    accelerator = Accelerator(mixed_precision="no", cpu=not torch.cuda.is_available())
    caches = {
        dtype: build_teacher_cache(
            teacher,
            tokenizer,
            data.splits["train"],
            os.path.join(work, dtype),
            label_names=data.label_names,
            max_length=64,
            dtype=dtype,
            accelerator=accelerator,
        )
        for dtype in ("float32", "float16", "bfloat16")
    }
    reference_projections = fit_projections(caches["float32"], FitOptions(num_subclasses=4))
    hidden32, logits = next(caches["float32"].iter_chunks(10**9))[:2]
    reference = lelp_targets(reference_projections.scores(hidden32), logits, 1.0, 1.0)
    rows = []
    for dtype in ("float16", "bfloat16"):
        hidden, _, _ = next(caches[dtype].iter_chunks(10**9))
        # Same projections (isolates the storage error) and refitted ones (what a user of that cache gets).
        same = lelp_targets(reference_projections.scores(hidden), logits, 1.0, 1.0)
        refit = lelp_targets(
            fit_projections(caches[dtype], FitOptions(num_subclasses=4)).scores(hidden), logits, 1.0, 1.0
        )
        rows.append(
            {
                "cache_dtype": dtype,
                "max_abs_hidden_error": float((hidden - hidden32).abs().max()),
                "max_abs_target_diff_same_projections": float((same - reference).abs().max()),
                "max_abs_target_diff_refitted": float((refit - reference).abs().max()),
                "mean_abs_target_diff_refitted": float((refit - reference).abs().mean()),
                "bytes_per_row": caches[dtype].hidden.dtype.itemsize * caches[dtype].hidden_size,
            }
        )
    return rows


def main() -> None:
    if not os.path.isdir(TEACHER):
        raise SystemExit(f"{TEACHER} is missing: run `make demo` (or recipes/train_teacher.py) first.")
    work = tempfile.mkdtemp(prefix="hf_lelp_precision_")
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    caches = cache_dtype_effect(work)  # first: before any bf16 run has set this process's accelerator state
    if "--only_cache_dtypes" in sys.argv:  # keep the training runs of the last full run
        with open(os.path.join(HERE, "results", "precision.json"), encoding="utf-8") as handle:
            runs = json.load(handle)["runs"]
    else:
        runs = training_runs(work)
    shutil.rmtree(work)
    summary = {}
    for name in sorted({r["precision"] for r in runs}):
        accuracies = [r["accuracy"] for r in runs if r["precision"] == name]
        summary[name] = {
            "mean": statistics.mean(accuracies),
            "std": statistics.stdev(accuracies),
            "n": len(accuracies),
        }
    payload = {"device": device, "command": COMMAND, "runs": runs, "summary": summary, "cache_dtypes": caches}
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", "precision.json"), "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    lines = [
        "# Precision",
        "",
        f"Produced by `{COMMAND}` on {device}; default LELP config (rotten_tomatoes, 2,000 "
        "train / 1,000 test, MiniLM-L6 teacher → 2-layer MiniLM student), seeds " + ", ".join(map(str, SEEDS)),
        "",
        "| training precision | test accuracy (mean ± std) | seeds |",
        "|---|---|---|",
    ]
    for name, stats in summary.items():
        lines.append(f"| {name} | {stats['mean']:.4f} ± {stats['std']:.4f} | {stats['n']} |")
    lines += [
        "",
        "| cache dtype | bytes/row | max abs h error | max abs target diff (same projections) | "
        "max / mean abs target diff (refitted) |",
        "|---|---|---|---|---|",
    ]
    for row in caches:
        lines.append(
            f"| {row['cache_dtype']} | {row['bytes_per_row']} | {row['max_abs_hidden_error']:.2e} | "
            f"{row['max_abs_target_diff_same_projections']:.2e} | "
            f"{row['max_abs_target_diff_refitted']:.2e} / {row['mean_abs_target_diff_refitted']:.2e} |"
        )
    with open(os.path.join(HERE, "PRECISION.md"), "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
