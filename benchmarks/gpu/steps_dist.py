"""Step (1), steps.py dist-prepare / dist / export-check: FSDP and DeepSpeed ZeRO-2 through save, resume and export."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time

from steps_common import (
    DISTILL,
    MINILM,
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

ACCELERATE_LAUNCH = ("-m", "accelerate.commands.launch")
ACCELERATE_CONFIGS = {
    "fsdp": "recipes/accelerate_configs/fsdp.yaml",
    "deepspeed": "recipes/accelerate_configs/deepspeed_zero2.yaml",
}
PORTS = {"fsdp": 29531, "deepspeed": 29541}
# Step (1): the tiny corpus of tests/conftest.py, 120 train rows at batch 16 = 8 steps per epoch, 2 epochs.
DIST_EPOCHS, DIST_BATCH, DIST_SAVE_STEPS, DIST_RESUME_FROM = 2, 16, 4, "checkpoint-4"
DIST_FINAL_STEP = 16


# ---------------------------------------------------------------------------- step (1): FSDP and DeepSpeed ZeRO-2
def tiny_project(folder: str, student: str, student_num_layers: int) -> dict:
    """The tiny corpus and configs of tests/conftest.py's `project` fixture (without --use_cpu)."""
    import pandas as pd
    import yaml

    sys.path.insert(0, os.path.join(ROOT, "tests"))
    from conftest import make_texts, save_tiny_model

    os.makedirs(folder, exist_ok=True)
    names = ["neg", "pos"]
    for split, n, seed in (("train", 120, 0), ("test", 40, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        frame = pd.DataFrame({"review": texts, "stars": [names[y] for y in labels]})
        frame.to_csv(os.path.join(folder, f"{split}.csv"), index=False)
    save_tiny_model(os.path.join(folder, "student_init"), hidden=32, layers=2, seed=2)
    if student == "tiny":
        student = os.path.join(folder, "student_init")
    common = {
        "train_file": os.path.join(folder, "train.csv"),
        "test_file": os.path.join(folder, "test.csv"),
        "text_column": "review",
        "label_column": "stars",
        "max_length": 24,
        "per_device_eval_batch_size": 32,
        "report_to": "none",
        "disable_tqdm": True,
        "seed": 0,
    }
    teacher = {
        **common,
        "teacher_model": os.path.join(folder, "student_init"),
        "output_dir": os.path.join(folder, "teacher"),
        "num_train_epochs": 3,
        "learning_rate": 1.0e-3,
        "per_device_train_batch_size": 16,
        "save_strategy": "no",
    }
    distill = {
        **common,
        "teacher": os.path.join(folder, "teacher"),
        "student": student,
        "student_num_layers": student_num_layers,
        "output_dir": os.path.join(folder, "will_be_overridden"),
        "method": "lelp",
        "num_subclasses": 2,
        "learning_rate": 3.0e-4,
        "per_device_train_batch_size": DIST_BATCH,
    }
    paths = {
        "teacher_config": os.path.join(folder, "teacher.yaml"),
        "distill_config": os.path.join(folder, "distill.yaml"),
    }
    with open(paths["teacher_config"], "w", encoding="utf-8") as handle:
        yaml.safe_dump(teacher, handle)
    with open(paths["distill_config"], "w", encoding="utf-8") as handle:
        yaml.safe_dump(distill, handle)
    return {**paths, "student": student, "student_num_layers": student_num_layers, "folder": folder}


def dist_prepare(work: str) -> int:
    """The tiny corpus, configs and teacher (recipes/train_teacher.py on the GPU) shared by both backends."""
    deadline = Deadline()
    try:
        from hf_lelp.data.assets import resolve_model

        resolve_model(MINILM)
        student, layers = MINILM, 2
    except (FileNotFoundError, ImportError) as error:  # the asset step failed: the tiny student still tests the path
        print(f"{MINILM} unavailable ({error}): the tiny BERT student of tests/conftest.py stands in")
        student, layers = "tiny", 1
    folder = os.path.join(work, "dist")
    project = tiny_project(folder, student, layers)
    rc, seconds = run_logged(
        [sys.executable, TRAIN_TEACHER, project["teacher_config"]],
        os.path.join(log_dir(work), "dist_teacher.log"),
        deadline.left(),
    )
    project.update(teacher_rc=rc, teacher_seconds=seconds)
    write_json(os.path.join(folder, "project.json"), project)
    if rc != 0:
        set_status(f"failed: tiny teacher (exit {rc}, logs/dist_teacher.log)")
    return rc


def dist_argv(backend: str, folder: str, resume: bool) -> list[str]:
    """`accelerate launch` of recipes/distill.py under the shipped config, on one GPU (the configs say 2)."""
    out = os.path.join(folder, backend)
    command = [sys.executable, *ACCELERATE_LAUNCH, "--config_file", ACCELERATE_CONFIGS[backend]]
    command += ["--num_processes", "1", "--main_process_port", str(PORTS[backend] + int(resume))]
    command += [DISTILL, os.path.join(folder, "distill.yaml"), "--output_dir", out]
    command += ["--cache_dir", os.path.join(folder, f"cache_{backend}"), "--num_train_epochs", str(DIST_EPOCHS)]
    command += ["--save_strategy", "steps", "--save_steps", str(DIST_SAVE_STEPS), "--logging_steps", "1"]
    command += ["--bf16", "true", "--log_level", "info"]
    if resume:
        command += ["--resume_from_checkpoint", os.path.join(out, DIST_RESUME_FROM)]
    return command


def export_check_argv(model_dir: str, folder: str) -> list[str]:
    return [
        sys.executable, STEPS, "export-check", "--model", model_dir, "--test_csv", os.path.join(folder, "test.csv"),
        "--text_column", "review", "--label_column", "stars",
    ]  # fmt: skip


def _checkpoint_facts(folder: str) -> dict:
    state = read_json(os.path.join(folder, "trainer_state.json"), {})
    return {
        "exists": os.path.isdir(folder),
        "complete_marker": os.path.isfile(os.path.join(folder, "lelp_checkpoint_complete.json")),
        "global_step": state.get("global_step"),
        "files": sorted(os.listdir(folder)) if os.path.isdir(folder) else [],
    }


def dist(backend: str, work: str, out: str) -> int:
    """Train with checkpoints, resume from checkpoint-4, reload the export: one record in distributed.json."""
    import importlib.util

    deadline = Deadline()
    folder = os.path.join(work, "dist")
    record: dict = {
        "backend": backend,
        "accelerate_config": ACCELERATE_CONFIGS[backend],
        "num_processes": 1,
        "recipe": DISTILL,
    }
    results_path = os.path.join(out, "distributed.json")

    def save(status: str, passed: bool) -> None:
        record.update(status=status, passed=passed)
        payload = read_json(results_path, {})
        payload[backend] = record
        write_json(results_path, payload)

    def finish(status: str, passed: bool) -> int:
        save(status, passed)
        set_status(status)
        return 0 if passed or status.startswith("skipped") else 1

    if backend == "deepspeed" and importlib.util.find_spec("deepspeed") is None:
        return finish("skipped: not installed", False)
    project = read_json(os.path.join(folder, "project.json"))
    if not project or project.get("teacher_rc") != 0:
        return finish("failed: dist_prepare did not finish (no tiny teacher)", False)
    record["student"] = f"{project['student']} ({project['student_num_layers']} layers)"
    model_dir = os.path.join(folder, backend)
    shutil.rmtree(model_dir, ignore_errors=True)
    shutil.rmtree(os.path.join(folder, f"cache_{backend}"), ignore_errors=True)
    problems = []

    # A: two epochs, a checkpoint every 4 steps.
    train_log = os.path.join(log_dir(work), f"dist_{backend}_train.log")
    rc, seconds = run_logged(dist_argv(backend, folder, resume=False), train_log, deadline.left() * 0.45)
    first = read_json(os.path.join(model_dir, "results.json"), {})
    record["train"] = {
        "rc": rc,
        "seconds": seconds,
        "command": " ".join(dist_argv(backend, folder, resume=False)),
        DIST_RESUME_FROM: _checkpoint_facts(os.path.join(model_dir, DIST_RESUME_FROM)),
        "test_accuracy": first.get("test_accuracy"),
        "export_agreement": first.get("export_agreement"),
    }
    if rc != 0:
        problems.append(f"train exit {rc}")
    if not record["train"][DIST_RESUME_FROM]["complete_marker"]:
        problems.append(f"no complete {DIST_RESUME_FROM}")
    save("incomplete: the step ended after the training run", False)  # replaced below unless the step is cut off

    # B: the same run resumed from checkpoint-4 (the documented way: same flags, same output_dir).
    if not problems:
        resume_log = os.path.join(log_dir(work), f"dist_{backend}_resume.log")
        started = time.time()
        rc, seconds = run_logged(dist_argv(backend, folder, resume=True), resume_log, deadline.left() * 0.8)
        with open(resume_log, encoding="utf-8", errors="replace") as handle:
            text = handle.read()
        final = _checkpoint_facts(os.path.join(model_dir, f"checkpoint-{DIST_FINAL_STEP}"))
        results_mtime = os.path.getmtime(os.path.join(model_dir, "results.json")) if first else 0
        second = read_json(os.path.join(model_dir, "results.json"), {})
        record["resume"] = {
            "rc": rc,
            "seconds": seconds,
            "from": DIST_RESUME_FROM,
            f"checkpoint-{DIST_FINAL_STEP}": final,
            "resume_logged": bool(re.search(r"(Resuming|Continuing) training from checkpoint", text)),
            "results_rewritten": results_mtime > started,
            "test_accuracy": second.get("test_accuracy"),
            "same_test_accuracy_as_uninterrupted": second.get("test_accuracy") == first.get("test_accuracy"),
        }
        if rc != 0:
            problems.append(f"resume exit {rc}")
        elif final["global_step"] != DIST_FINAL_STEP or not final["complete_marker"]:
            problems.append(f"resume did not reach a complete checkpoint-{DIST_FINAL_STEP}")
        elif not record["resume"]["results_rewritten"]:
            problems.append("resume wrote no results.json")
        save("incomplete: the step ended after the resume", False)

    # The export, reloaded as users load it, in a process that never imports hf_lelp.
    if os.path.isfile(os.path.join(model_dir, "config.json")):
        check_log = os.path.join(log_dir(work), f"dist_{backend}_export.log")
        rc, _ = run_logged(export_check_argv(model_dir, folder), check_log, max(10.0, deadline.left()))
        with open(check_log, encoding="utf-8", errors="replace") as handle:
            lines = [line for line in handle.read().splitlines() if line.startswith("{")]
        export = json.loads(lines[-1]) if rc == 0 and lines else {"rc": rc, "loads": False}
        record["export"] = export
        if not (export.get("loads") and export.get("labels_valid") and export.get("plain_c_class_weights")):
            problems.append("export did not reload as a plain C-class pipeline model")
        if export.get("hf_lelp_imported"):
            problems.append("the export check imported hf_lelp")
    else:
        problems.append("no exported model")
    return finish("pass" if not problems else "failed: " + "; ".join(problems), not problems)


def export_check(model: str, test_csv: str, text_column: str, label_column: str) -> int:
    """pipeline('text-classification') on the exported folder, without hf_lelp: one JSON line on stdout."""
    import glob

    import pandas as pd
    import torch
    from safetensors import safe_open
    from transformers import pipeline

    frame = pd.read_csv(test_csv)
    classifier = pipeline("text-classification", model=model, device=0 if torch.cuda.is_available() else -1)
    predictions = [p["label"] for p in classifier(list(frame[text_column]), batch_size=64, truncation=True)]
    names = set(classifier.model.config.id2label.values())
    weight_files = sorted(glob.glob(os.path.join(model, "model*.safetensors")))
    keys = set()
    for path in weight_files:
        with safe_open(path, "pt") as handle:
            keys.update(handle.keys())
    # The exported weights hold nothing but the plain classifier's own tensors (no LELP head, no regressor).
    unexpected = sorted(keys - set(classifier.model.state_dict()))
    reported = read_json(os.path.join(model, "results.json"), {}).get("test_accuracy")
    accuracy = float((pd.Series(predictions) == frame[label_column].astype(str)).mean())
    result = {
        "loads": True,
        "rows": len(predictions),
        "labels_valid": all(p in names for p in predictions),
        "num_labels": classifier.model.config.num_labels,
        "accuracy": accuracy,
        "reported_test_accuracy": reported,
        "matches_reported": reported is not None and abs(accuracy - reported) < 1e-9,
        "plain_c_class_weights": bool(keys) and not unexpected,
        "unexpected_weights": unexpected[:20],
        "files": sorted(os.listdir(model)),
        "hf_lelp_imported": any(name == "hf_lelp" or name.startswith("hf_lelp.") for name in sys.modules),
    }
    print(json.dumps(result))
    return 0
