"""LoRA student vs full fine-tuning on the default LELP config: trainable fraction and test accuracy per seed.

    .venv/bin/python benchmarks/peft_vs_full.py     # needs the demo teacher (make demo)

Writes benchmarks/results/peft_vs_full.json and benchmarks/PEFT.md.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(ROOT, "recipes"))

import distill  # noqa: E402

CONFIG = os.path.join(ROOT, "recipes", "configs", "distill_rotten_tomatoes.yaml")
COMMAND = "python benchmarks/peft_vs_full.py"
SEEDS = (0, 1, 2)
VARIANTS = {
    "full fine-tuning": [],
    # LoRA needs a larger learning rate than full fine-tuning (ours: 1e-3, a common LoRA choice).
    "LoRA r=8 (query, value), merged": [
        "--use_peft",
        "true",
        "--lora_r",
        "8",
        "--lora_alpha",
        "16",
        "--lora_target_modules",
        "query",
        "value",
        "--merge_lora",
        "true",
        "--learning_rate",
        "1e-3",
    ],
}


def main() -> None:
    work = tempfile.mkdtemp(prefix="hf_lelp_peft_")
    runs = []
    for seed in SEEDS:
        for name, flags in VARIANTS.items():
            out = os.path.join(work, f"{len(runs)}")
            demo = os.path.join(ROOT, "runs", "demo")  # the demo's teacher and cache (make demo)
            run = ["--output_dir", out, "--seed", str(seed), "--disable_tqdm", "true", *flags]
            teacher = ["--teacher", os.path.join(demo, "teacher"), "--cache_dir", os.path.join(demo, "teacher_cache")]
            results = distill.main([CONFIG, *run, *teacher])
            runs.append(
                {
                    "variant": name,
                    "seed": seed,
                    "accuracy": results["test_accuracy"],
                    "trainable_fraction": results["trainable_fraction"],
                    "trainable_parameters": results["trainable_parameters"],
                    "train_seconds": results["train_seconds"],
                    "export_agreement": results["export_agreement"],
                }
            )
            shutil.rmtree(out)
    shutil.rmtree(work)
    with open(os.path.join(HERE, "results", "peft_vs_full.json"), "w", encoding="utf-8") as handle:
        json.dump({"command": COMMAND, "runs": runs}, handle, indent=2)
    lines = [
        "# LoRA vs full fine-tuning (default LELP config)",
        "",
        f"Produced by `{COMMAND}`; rotten_tomatoes "
        "2,000 train / 1,000 test, MiniLM-L6 teacher → 2-layer MiniLM student, LELP S = 4, seeds "
        + ", ".join(map(str, SEEDS))
        + ".",
        "",
        "| variant | trainable parameters | fraction | test accuracy (mean ± std) | train s (mean) |",
        "|---|---|---|---|---|",
    ]
    for name in VARIANTS:
        rows = [r for r in runs if r["variant"] == name]
        accuracies = [r["accuracy"] for r in rows]
        lines.append(
            f"| {name} | {rows[0]['trainable_parameters']:,} | {rows[0]['trainable_fraction']:.4f} | "
            f"{statistics.mean(accuracies):.4f} ± {statistics.stdev(accuracies):.4f} | "
            f"{statistics.mean(r['train_seconds'] for r in rows):.0f} |"
        )
    report = "\n".join(lines)
    print(report)
    Path(HERE, "PEFT.md").write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
