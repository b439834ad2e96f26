"""One transformer student trained by the recipe's own job (`run_distillation`), with the settings every benchmark
transformer track shares; both tracks (benchmarks/transformer_track.py, the strong-teacher study) call it."""

from __future__ import annotations

import shutil
import tempfile

# Ours, for every method: evaluation batch and warm-up as the demo config; no checkpoints or evaluation during
# training (the track measures the reloaded export once, at the end).
SHARED_SETTINGS = {
    "per_device_eval_batch_size": 64,
    "warmup_steps": 10,
    "save_strategy": "no",
    "eval_strategy": "no",
    "report_to": "none",
    "disable_tqdm": True,
}


def distill_student(
    data_args, model_args, method: str, seed: int, hparams: dict, output_dir: str | None = None, **settings
) -> dict:
    """run_distillation's metrics for one (method, seed, hparams). Without `output_dir` the student goes to a
    temporary folder, removed afterwards; `settings` are further LELPConfig fields (e.g. use_cpu)."""
    from hf_lelp.training.config import LELPConfig
    from hf_lelp.workflow import run_distillation

    folder = output_dir or tempfile.mkdtemp(prefix="transformer-student-")
    try:
        training = LELPConfig(
            output_dir=folder,
            method=method,
            seed=seed,
            projection_seed=seed,
            **{**SHARED_SETTINGS, **settings, **hparams},
        )
        return run_distillation(data_args, model_args, training)
    finally:
        if output_dir is None:
            shutil.rmtree(folder, ignore_errors=True)


def student_row(method: str, seed: int, split: str, hparams: dict, results: dict) -> dict:
    """What every track keeps of one student: its identity and the metrics of its reloaded export on `split`."""
    return {
        "method": method,
        "seed": seed,
        "split": split,
        "hparams": hparams,
        "accuracy": results[f"{split}_accuracy"],
        "trainer_accuracy": results.get(f"{split}_trainer_accuracy"),  # the head's own (flat: before export)
        "macro_f1": results[f"{split}_macro_f1"],
        "export_agreement": results.get("export_agreement"),
        "train_examples": results.get("train_examples"),
        "num_subclasses": results.get("num_subclasses"),  # as built (the oracle's: its number of fine labels)
        "train_seconds": results["train_seconds"],
    }
