"""Step (2), steps.py track / track-worker: the transformer track (teacher choice, students, aggregate)."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time

from steps_common import (
    CACHE_TEACHER,
    MINILM,
    MPNET,
    ROOT,
    STEPS,
    TRAIN_TEACHER,
    Deadline,
    log_dir,
    read_json,
    run_logged,
    set_status,
    write_json,
)

MLP_RESULTS = "benchmarks/results/rotten_tomatoes.json"
# Step (2): Rotten Tomatoes (offline short name), its whole train split less 1,000 rows carved for validation.
TRACK_DATA = [
    "--dataset", "rotten_tomatoes", "--max_length", "64", "--validation_from_train", "1000", "--subset_seed", "0",
]  # fmt: skip
# The teacher's learning rate is chosen on validation from the CPU strong track's grid (benchmarks/harness/strong.py).
TEACHER_LEARNING_RATES = {MPNET: (2e-5, 5e-5), MINILM: (5e-5, 1e-4)}
TEACHER_EPOCHS = 2
# GPU_SMOKE=1 shrinks step (2) to a few hundred rows, one epoch, on the CPU: the plumbing, checked off the device.
SMOKE = os.environ.get("GPU_SMOKE") == "1"
# The students' settings are those of benchmarks/transformer_track.py (the demo config's learning rate, epochs and
# batch; τ, S, β as the MLP track chose them on validation), unless --hparams_file gives others.
DEFAULT_METHODS, DEFAULT_SEEDS = ("ce", "kd", "lelp"), (0, 1, 2)


# ------------------------------------------------------------------------------ step (2): the transformer track
def track_data() -> list[str]:
    if not SMOKE:
        return list(TRACK_DATA)
    smoke = ["--validation_from_train", "100", "--max_train_examples", "400", "--max_eval_examples", "100"]
    return [*TRACK_DATA[: TRACK_DATA.index("--validation_from_train")], *TRACK_DATA[-2:], *smoke]


def precision() -> list[str]:
    return ["--use_cpu", "true"] if SMOKE else ["--bf16", "true"]


def teacher_argv(teacher_model: str, learning_rate: float, output_dir: str) -> list[str]:
    """recipes/train_teacher.py: fine-tune the teacher in bf16; its validation metrics go to teacher_results.json."""
    return [
        *track_data(), "--eval_split", "validation", "--teacher_model", teacher_model, "--output_dir", output_dir,
        "--learning_rate", str(learning_rate), "--num_train_epochs", str(1 if SMOKE else TEACHER_EPOCHS),
        "--per_device_train_batch_size", "32", "--per_device_eval_batch_size", "256", "--warmup_steps", "10",
        *precision(), "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "50",
        "--report_to", "none", "--disable_tqdm", "true", "--seed", "0",
    ]  # fmt: skip


def cache_argv(teacher_dir: str, cache_dir: str, output_dir: str) -> list[str]:
    """recipes/cache_teacher.py: the teacher pass (fp32) once, before the students run in parallel."""
    return [
        *track_data(), "--teacher", teacher_dir, "--cache_dir", cache_dir, "--output_dir", output_dir,
        "--teacher_batch_size", "256", "--report_to", "none", *(["--use_cpu", "true"] if SMOKE else []),
    ]  # fmt: skip


def student_argv(
    method: str, seed: int, teacher_dir: str, cache_dir: str, output_dir: str, hparams: dict
) -> list[str]:
    """recipes/distill.py's flags for one student (run in-process by track-worker through hf_lelp.commands)."""
    argv = [
        *track_data(), "--teacher", teacher_dir, "--cache_dir", cache_dir, "--student", MINILM,
        "--student_num_layers", "2", "--output_dir", output_dir, "--method", method, "--seed", str(seed),
        "--projection_seed", str(seed), "--per_device_eval_batch_size", "256", "--warmup_steps", "10",
        "--save_strategy", "no", "--eval_strategy", "no", "--logging_steps", "50", "--report_to", "none",
        "--disable_tqdm", "true", *precision(),
    ]  # fmt: skip
    if SMOKE:
        hparams = {**hparams, "num_train_epochs": 1}
    for name, value in sorted(hparams.items()):
        argv += [f"--{name}", str(value)]
    return argv


def choose_teacher() -> tuple[str, dict]:
    """GPU_TEACHER when set; else all-mpnet-base-v2 when its parts are installed; else the MiniLM-L6 fallback."""
    wanted = os.environ.get("GPU_TEACHER")
    if wanted:
        return wanted, {"source": "GPU_TEACHER"}
    from hf_lelp.data.split_assets import SPLIT_MODELS, SplitAssetError, installed_parts, reassemble

    try:
        parts = installed_parts(SPLIT_MODELS[MPNET])
    except SplitAssetError as error:
        return MINILM, {"mpnet": "skipped: mpnet parts not carried", "why": str(error)[:300]}
    return reassemble(MPNET, SPLIT_MODELS[MPNET], parts), {"source": "all-mpnet-base-v2 parts", "name": MPNET}


def student_hparams(methods: list[str], hparams_file: str | None) -> tuple[dict, str]:
    if hparams_file:
        chosen = read_json(hparams_file)
        if not isinstance(chosen, dict):
            raise ValueError(f"--hparams_file {hparams_file}: expected {{method: {{flag: value}}}}")
        return {m: chosen.get(m, {}) for m in methods}, f"--hparams_file {hparams_file}"
    sys.path.insert(0, ROOT)
    from benchmarks.transformer_track import DEMO_SETTINGS, mlp_choice

    mlp = read_json(os.path.join(ROOT, MLP_RESULTS), {"runs": []})
    chosen = {}
    for run in mlp["runs"]:
        chosen.setdefault(run["method"], run["hparams"])
    hparams = {m: {**DEMO_SETTINGS, **mlp_choice(m, chosen, MLP_RESULTS)} for m in methods}
    return hparams, f"lr/epochs/batch: the demo config; τ, S, β: the MLP track's validation choice ({MLP_RESULTS})"


def teacher_test_metrics(teacher_dir: str, num_labels: int) -> dict:
    """The chosen teacher's test accuracy and macro F1 (reported only; chosen on validation)."""
    import numpy as np
    import torch
    from transformers import HfArgumentParser, pipeline

    from hf_lelp.training.arguments import DataArguments
    from hf_lelp.training.job_data import load_data

    (data_args,) = HfArgumentParser(DataArguments).parse_args_into_dataclasses(track_data())
    data = load_data(data_args)
    test = data.splits["test"]
    classifier = pipeline("text-classification", model=teacher_dir, device=0 if torch.cuda.is_available() else -1)
    label2id = classifier.model.config.label2id
    outputs = classifier(list(test["text"]), batch_size=256, truncation=True, max_length=64)
    predicted = np.array([label2id[o["label"]] for o in outputs])
    labels = np.asarray(test["label"])
    f1s = []
    for c in range(num_labels):
        tp = np.sum((predicted == c) & (labels == c))
        denominator = np.sum(predicted == c) + np.sum(labels == c)
        f1s.append(2 * tp / denominator if denominator else 0.0)
    return {"test_accuracy": float((predicted == labels).mean()), "test_macro_f1": float(np.mean(f1s))}


def aggregate(runs: list[dict]) -> tuple[dict, dict]:
    """Per method: mean ± sample std over seeds; gaps called ahead only beyond the combined std."""
    import numpy as np

    methods = {}
    for run in runs:
        if "accuracy" in run:
            methods.setdefault(run["method"], []).append(run)
    table = {}
    for method, rows in methods.items():
        acc = np.array([r["accuracy"] for r in rows])
        f1 = np.array([r["macro_f1"] for r in rows])
        table[method] = {
            "seeds": sorted(r["seed"] for r in rows),
            "accuracy_mean": float(acc.mean()),
            "accuracy_std": float(acc.std(ddof=1)) if len(acc) > 1 else None,
            "macro_f1_mean": float(f1.mean()),
            "macro_f1_std": float(f1.std(ddof=1)) if len(f1) > 1 else None,
        }
    gaps = {}
    for a, b in (("lelp", "kd"), ("lelp", "ce"), ("kd", "ce")):
        if a in table and b in table:
            diff = table[a]["accuracy_mean"] - table[b]["accuracy_mean"]
            stds = [table[a]["accuracy_std"], table[b]["accuracy_std"]]
            combined = math.sqrt(sum(s**2 for s in stds)) if None not in stds else None
            gaps[f"{a}-{b}"] = {
                "accuracy_points": round(100 * diff, 2),
                "combined_std_points": round(100 * combined, 2) if combined is not None else None,
                "beyond_noise": combined is not None and abs(diff) > combined,
            }
    return table, gaps


def track(work: str, out: str, methods: list[str], seeds: list[int], hparams_file: str | None) -> int:
    deadline = Deadline(margin=20.0)
    folder = os.path.join(work, "track")
    os.makedirs(folder, exist_ok=True)
    os.makedirs(log_dir(work), exist_ok=True)
    result_path = os.path.join(out, "transformer_track.json")
    teacher_model, teacher_note = choose_teacher()
    name = teacher_note.get("name", teacher_model)
    hparams, hparams_source = student_hparams(methods, hparams_file)
    result: dict = {
        "dataset": "rotten_tomatoes",
        "track": "transformer_student (GPU, bf16)",
        "data": "offline rotten_tomatoes: train less 1,000 rows carved for validation (subset_seed 0), test 2,550",
        "data_flags": track_data(),
        "smoke": SMOKE,
        "teacher": {"model": name, **teacher_note, "epochs": 1 if SMOKE else TEACHER_EPOCHS},
        "student": "all-MiniLM-L6-v2 truncated to 2 layers, fine-tuned end to end",
        "hparams": hparams,
        "hparams_source": hparams_source,
        "runs": [],
        "status": "running",
    }
    write_json(result_path, result)
    # Teacher: one fine-tuning per learning rate, in parallel; the best on validation is kept.
    learning_rates = TEACHER_LEARNING_RATES[MPNET if "mpnet" in name.lower() else MINILM]
    candidates = {}
    for lr in learning_rates:
        output_dir = os.path.join(folder, f"teacher_lr{lr:g}")
        command = [sys.executable, TRAIN_TEACHER, *teacher_argv(teacher_model, lr, output_dir)]
        log = open(os.path.join(log_dir(work), f"track_teacher_lr{lr:g}.log"), "w", encoding="utf-8")
        process = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        candidates[lr] = (output_dir, process)
    teachers_done_by = time.time() + deadline.left() * 0.4  # the students need the rest
    grid = []
    for lr, (output_dir, process) in candidates.items():
        try:
            rc = process.wait(timeout=max(1.0, teachers_done_by - time.time()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = 124
        metrics = read_json(os.path.join(output_dir, "teacher_results.json"), {})
        grid.append(
            {"learning_rate": lr, "rc": rc, **{k: v for k, v in metrics.items() if k.startswith("validation_")}}
        )
    result["teacher"]["search"] = grid
    usable = [g for g in grid if g["rc"] == 0 and "validation_accuracy" in g]
    if not usable:
        result["status"] = "failed: no teacher trained (logs/track_teacher_*.log)"
        write_json(result_path, result)
        set_status(result["status"])
        return 1
    best = max(usable, key=lambda g: (g["validation_accuracy"], g.get("validation_macro_f1", 0.0)))
    teacher_dir = os.path.join(folder, f"teacher_lr{best['learning_rate']:g}")
    result["teacher"].update(chosen_learning_rate=best["learning_rate"], **teacher_test_metrics(teacher_dir, 2))
    write_json(result_path, result)
    # The teacher pass once, so that the parallel students only open the cache.
    cache_dir = os.path.join(folder, "teacher_cache")
    rc, seconds = run_logged(
        [sys.executable, CACHE_TEACHER, *cache_argv(teacher_dir, cache_dir, os.path.join(folder, "cache_out"))],
        os.path.join(log_dir(work), "track_cache.log"),
        deadline.left(),
    )
    result["teacher"]["cache_seconds"] = seconds
    if rc != 0:
        result["status"] = f"failed: teacher cache (exit {rc}, logs/track_cache.log)"
        write_json(result_path, result)
        set_status(result["status"])
        return 1
    # Students: one process per method on the one GPU (small models: the GPU waits on Python, not on math).
    threads = str(max(1, (os.cpu_count() or 3) // len(methods)))
    env = {**os.environ, "OMP_NUM_THREADS": threads}
    workers = []
    for method in methods:
        command = [
            sys.executable, STEPS, "track-worker", "--work", work, "--method", method, "--teacher_dir", teacher_dir,
            "--cache_dir", cache_dir, "--hparams", json.dumps(hparams[method]), "--seeds", *map(str, seeds),
        ]  # fmt: skip
        log = open(os.path.join(log_dir(work), f"track_{method}.log"), "w", encoding="utf-8")
        workers.append(
            subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        )
    timed_out = False
    for process in workers:
        try:
            process.wait(timeout=max(1.0, deadline.left()))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            timed_out = True
    runs = []
    for method in methods:
        path = os.path.join(folder, f"runs-{method}.jsonl")
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                runs += [json.loads(line) for line in handle if line.strip()]
    table, gaps = aggregate(runs)
    missing = len(methods) * len(seeds) - sum(1 for r in runs if "accuracy" in r)
    result.update(runs=runs, methods=table, gaps=gaps)
    result["status"] = (
        "ok" if not missing else f"incomplete: {missing} runs missing" + (" (out of time)" if timed_out else "")
    )
    write_json(result_path, result)
    set_status(result["status"])
    return 0 if not missing else 1


def track_worker(work: str, method: str, seeds: list[int], teacher_dir: str, cache_dir: str, hparams: dict) -> int:
    """The seeds of one method, one after another, in this process (recipes/distill.py's job and flags)."""
    from hf_lelp.commands import distill

    path = os.path.join(work, "track", f"runs-{method}.jsonl")
    failures = 0
    for seed in seeds:
        output_dir = os.path.join(work, "track", "students", f"{method}-seed{seed}")
        shutil.rmtree(output_dir, ignore_errors=True)
        start = time.time()
        try:
            results = distill(student_argv(method, seed, teacher_dir, cache_dir, output_dir, hparams))
            row = {
                "method": method,
                "seed": seed,
                "accuracy": results["test_accuracy"],
                "macro_f1": results["test_macro_f1"],
                "trainer_accuracy": results.get("test_trainer_accuracy"),
                "export_agreement": results.get("export_agreement"),
                "train_examples": results.get("train_examples"),
                "train_seconds": results.get("train_seconds"),
            }
        except Exception as error:  # recorded, and the next seed still runs
            failures += 1
            row = {"method": method, "seed": seed, "error": f"{type(error).__name__}: {error}"[:1000]}
        row["wall_seconds"] = round(time.time() - start, 1)
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)
    return 1 if failures else 0
