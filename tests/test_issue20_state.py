"""Issue 20, state and publishing: stale files of an earlier model, secrets in lock files, checkpoint pushes with
the best model, foreign models in output_dir, the checkpoint marker before rotation, the resume fingerprint, and
the publish scan's local paths. Driven through the CLI (hf_lelp.commands.main) and the real push path."""

import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest
import transformers.trainer_utils
from test_publishing import hub  # noqa: F401 (the stand-in Hub fixture)

from conftest import BEST_ON_VALIDATION, ROOT, make_texts, save_tiny_model
from hf_lelp import commands
from hf_lelp.base import locks
from hf_lelp.base.locks import LOCK_FILE, FolderInUseError, exclusive_folder
from hf_lelp.hub.publish import UnsafePushError, scan
from hf_lelp.training import job_cache
from hf_lelp.training.resume import CHECKPOINT_MARKER

pytestmark = pytest.mark.slow
SECRET = "hf_issue20canary0123456789abcdef"


def cli(project, out, *flags) -> dict:
    """`hf-lelp distill <project config> --output_dir out ...`; the results it wrote."""
    commands.main(["distill", str(project / "distill.yaml"), "--output_dir", str(out), *flags])
    return json.loads((Path(out) / "results.json").read_text())


def refused(capsys, project, out, *flags) -> str:
    """The one-paragraph error of a distill run that must be refused (exit code 2)."""
    with pytest.raises(SystemExit) as exited:
        commands.main(["distill", str(project / "distill.yaml"), "--output_dir", str(out), *flags])
    assert exited.value.code == 2
    error = capsys.readouterr().err
    assert "hf-lelp: error:" in error and "Traceback" not in error, error
    return error


def folder_digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()}


def labelled_csvs(folder: Path, names: list[str]) -> tuple[str, str]:
    """train/test csv files of the project's texts whose two labels are `names`."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n, seed in (("train", 48, 0), ("test", 16, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        pd.DataFrame({"review": texts, "stars": [names[y] for y in labels]}).to_csv(
            folder / f"{split}.csv", index=False
        )
    return str(folder / "train.csv"), str(folder / "test.csv")


# --- 1. A save leaves exactly the saved model's files ---------------------------------------------------------


@pytest.mark.fault
@pytest.mark.publish
def test_a_full_model_saved_over_a_lora_run_leaves_no_adapter_behind(project, hub, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    cli(project, out, "--use_peft", "true", "--save_strategy", "epoch")
    assert (out / "adapter_model.safetensors").is_file() and (out / "adapter_config.json").is_file()
    assert (out / "checkpoint-8" / "adapter_model.safetensors").is_file()
    (out / "notes.txt").write_text("the user's own file")
    results = cli(
        project,
        out,
        "--save_strategy",
        "epoch",
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/after-lora",
        "--hub_strategy",
        "end",
        "--hub_token",
        SECRET,
    )
    assert not (out / "adapter_model.safetensors").exists() and not (out / "adapter_config.json").exists()
    assert (out / "model.safetensors").is_file() and (out / "notes.txt").read_text() == "the user's own file"
    # The checkpoint folder of the same step was the LoRA run's: replaced, not mixed.
    assert not (out / "checkpoint-8" / "adapter_model.safetensors").exists()
    assert (out / "checkpoint-8" / "model.safetensors").is_file()
    # The reported metrics are the full model's: the export reloads to the trainer's predictions.
    assert results["export_agreement"] == 1.0 and results["export_reloaded_with"].startswith("pipeline")
    published = {path for path, _ in hub.uploads}
    assert "model.safetensors" in published and not {"adapter_config.json", "adapter_model.safetensors"} & published


# --- 2. Lock files: no secret, owner-only, removed ---------------------------------------------------------------


@pytest.mark.fault
def test_lock_files_hold_no_token_are_owner_only_and_removed_at_the_end(project, tmp_path, monkeypatch, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["hf-lelp", "distill", str(project / "distill.yaml"), "--output_dir", str(out)]
    argv += ["--cache_dir", str(cache), f"--hub_token={SECRET}", "--num_train_epochs", "1"]
    monkeypatch.setattr(sys, "argv", argv)
    seen = {}
    build = job_cache._build_cache

    def build_and_look(*args, **kwargs):  # both folders are held while the teacher pass runs
        for folder in (out, cache):
            lock = folder / LOCK_FILE
            seen[folder.name] = (lock.read_text(), stat.S_IMODE(lock.stat().st_mode))
        return build(*args, **kwargs)

    monkeypatch.setattr(job_cache, "_build_cache", build_and_look)
    commands.main(argv[1:])
    for name, (content, mode) in seen.items():
        assert SECRET not in content and "--hub_token=<masked>" in content, (name, content)
        assert mode == 0o600, (name, oct(mode))
    assert not (out / LOCK_FILE).exists() and not (cache / LOCK_FILE).exists()
    # A concurrent run's refusal names the holder without its token (given as `--hub_token VALUE` here).
    script = (
        "import sys, time; from hf_lelp.base.locks import exclusive_folder\n"
        f"with exclusive_folder({str(out)!r}, 'test'):\n"
        "    print('held', flush=True); time.sleep(120)\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", script, "--hub_token", SECRET], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        error = refused(capsys, project, out, "--hub_token", SECRET)
        assert f'"pid": {holder.pid}' in error and SECRET not in error and "--hub_token <masked>" in error
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_file_unlinked_before_it_is_locked_is_not_taken(tmp_path, monkeypatch):
    """The holder leaving (unlink, then unlock) between another process's open and flock: the newcomer must lock
    the file now at the path, else two runs would each hold a lock on a different file."""
    folder = tmp_path / "held"
    folder.mkdir()
    path = folder / LOCK_FILE
    path.write_text("{}")
    real_flock, calls = fcntl.flock, []

    def flock_after_the_holder_left(fd, operation):
        if not calls:
            os.unlink(path)  # the previous holder unlinks the file this process has just opened
        calls.append(operation)
        return real_flock(fd, operation)

    monkeypatch.setattr(locks.fcntl, "flock", flock_after_the_holder_left)
    with exclusive_folder(str(folder), "test"):
        monkeypatch.setattr(locks.fcntl, "flock", real_flock)
        assert len(calls) == 2 and path.is_file()
        with pytest.raises(FolderInUseError, match="in use by another hf-lelp run"):
            with exclusive_folder(str(folder), "test"):
                pass
    assert not path.exists()


# --- 3. Checkpoint pushes with the best model; results before a refused push ----------------------------------


@pytest.mark.publish
def test_checkpoint_pushes_with_load_best_model_at_end_publish_a_relative_best_checkpoint(project, hub, tmp_path):  # noqa: F811
    out = tmp_path / "best"
    cli(
        project,
        out,
        "--push_to_hub",
        "true",
        "--hub_model_id",
        "me/best",
        "--hub_token",
        SECRET,
        "--hub_strategy",
        "checkpoint",
        *BEST_ON_VALIDATION,
        "--cache_dir",
        str(tmp_path / "cache"),
        "--num_train_epochs",
        "2",
    )
    states = [json.loads(content) for path, content in hub.uploads if path == "last-checkpoint/trainer_state.json"]
    assert len(states) == 2 and all(s["best_model_checkpoint"].startswith("checkpoint-") for s in states), states
    assert hub.commits[-1]["message"] == "hf-lelp: lelp student"


@pytest.mark.publish
def test_a_push_refused_at_the_end_leaves_results_json(project, hub, tmp_path):  # noqa: F811
    out = tmp_path / "run"
    # Label names that are this run's output path: config.json and the card would publish it.
    train, test = labelled_csvs(tmp_path / "data", [f"{out}/neg", f"{out}/pos"])
    flags = ["--method", "ce", "--train_file", train, "--test_file", test, "--push_to_hub", "true"]
    flags += ["--hub_model_id", "me/refused", "--hub_token", SECRET]
    with pytest.raises(UnsafePushError, match=r"contains the local path"):
        commands.distill([str(project / "distill.yaml"), "--output_dir", str(out), *flags])
    results = json.loads((out / "results.json").read_text())
    assert results["test_accuracy"] is not None and "export_agreement" in results
    assert not hub.commits


# --- 7. Folders that hold another model -----------------------------------------------------------------------


@pytest.mark.bad_input
def test_the_teacher_a_foreign_model_and_the_cache_folder_are_refused_as_output_dir(project, tmp_path, capsys):
    teacher = tmp_path / "teacher"
    shutil.copytree(project / "teacher", teacher)
    before = folder_digest(teacher)
    error = refused(capsys, project, teacher, "--teacher", str(teacher), "--cache_dir", str(tmp_path / "cache"))
    assert "is the --teacher folder" in error
    assert folder_digest(teacher) == before
    foreign = Path(save_tiny_model(tmp_path / "someone_elses_model"))
    before = folder_digest(foreign)
    error = refused(capsys, project, foreign)
    assert "holds a model that hf-lelp did not write (config.json, model.safetensors)" in error
    assert folder_digest(foreign) == before
    same = tmp_path / "same"
    error = refused(capsys, project, same, "--cache_dir", str(same))
    assert "is the same folder as --cache_dir" in error and "in use by another" not in error
    error = refused(capsys, project, same / "inside", "--cache_dir", str(same))
    assert "is inside --cache_dir" in error


# --- 8. A checkpoint is complete before older ones are rotated away -------------------------------------------


class Killed(BaseException):
    """The process dying at a chosen point (not an Exception: nothing may catch it)."""


@pytest.mark.fault
def test_a_kill_right_after_rotation_leaves_a_complete_checkpoint(project, tmp_path, monkeypatch):
    out = tmp_path / "rotated"
    flags = ["--save_strategy", "epoch", "--save_total_limit", "1", "--num_train_epochs", "3"]
    real_rmtree = shutil.rmtree

    def rmtree_then_die(path, *args, **kwargs):  # the rotation deleted the old checkpoint, then the kill
        real_rmtree(path, *args, **kwargs)
        if os.path.basename(str(path)).startswith("checkpoint-"):
            raise Killed

    monkeypatch.setattr(transformers.trainer_utils.shutil, "rmtree", rmtree_then_die)
    with pytest.raises(Killed):
        cli(project, out, *flags)
    monkeypatch.setattr(transformers.trainer_utils.shutil, "rmtree", real_rmtree)
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-16"]
    assert (out / "checkpoint-16" / CHECKPOINT_MARKER).is_file()
    # Rotation is held back while the checkpoint is written, but its arguments record the limit the user gave.
    assert json.loads((out / "checkpoint-16" / "training_args.json").read_text())["save_total_limit"] == 1
    results = cli(project, out, *flags, "--resume_from_checkpoint", "true")
    assert results["test_accuracy"] is not None
    assert [p.name for p in out.glob("checkpoint-*")] == ["checkpoint-24"]


# --- 5. The resume fingerprint covers every setting that changes the model or the data ------------------------


@pytest.mark.fault
def test_resume_is_refused_after_lora_data_or_max_length_changes(project, tmp_path, capsys):
    lora = tmp_path / "lora"
    cli(project, lora, "--use_peft", "true", "--save_strategy", "epoch")
    for flag, value, shown in (
        ("--lora_alpha", "32", "lora_alpha: checkpoint 16, this run 32"),
        ("--lora_dropout", "0.2", "lora_dropout: checkpoint 0.05, this run 0.2"),
    ):
        error = refused(capsys, project, lora, "--use_peft", "true", flag, value, "--resume_from_checkpoint", "true")
        assert "belongs to another run configuration" in error and shown in error, error
    ce = tmp_path / "ce"
    cli(project, ce, "--method", "ce", "--save_strategy", "epoch")
    other = pd.read_csv(project / "train.csv")
    other["review"] = other["review"].iloc[::-1].tolist()  # the same size, other rows
    (tmp_path / "other_train.csv").write_text(other.to_csv(index=False))
    changes = (
        (("--train_file", str(tmp_path / "other_train.csv")), "train_digest: checkpoint"),
        (("--max_length", "20"), "max_length: checkpoint 24, this run 20"),
    )
    for change, shown in changes:
        error = refused(capsys, project, ce, "--method", "ce", *change, "--resume_from_checkpoint", "true")
        assert "belongs to another run configuration" in error and shown in error, error
    # The same settings resume, to train longer.
    results = cli(
        project,
        ce,
        "--method",
        "ce",
        "--save_strategy",
        "epoch",
        "--num_train_epochs",
        "2",
        "--resume_from_checkpoint",
        "true",
    )
    assert results["test_accuracy"] is not None and (ce / "checkpoint-16").is_dir()
    marker = (ce / "checkpoint-16" / CHECKPOINT_MARKER).read_text()
    assert str(tmp_path) not in marker and str(project) not in marker  # the marker may be pushed


# --- 13. The scan knows this machine's own folders ------------------------------------------------------------


@pytest.mark.publish
def test_a_path_under_a_one_level_home_is_refused_by_the_push(project, hub, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.setenv("HOME", "/hfl20home")
    train, test = labelled_csvs(tmp_path / "data", ["/hfl20home/neg", "/hfl20home/pos"])
    flags = ["--method", "ce", "--train_file", train, "--test_file", test, "--push_to_hub", "true"]
    flags += ["--hub_model_id", "me/home", "--hub_token", SECRET]
    with pytest.raises(UnsafePushError, match=r"contains the local path /hfl20home\b"):
        commands.distill([str(project / "distill.yaml"), "--output_dir", str(tmp_path / "out"), *flags])
    assert not hub.commits


def test_the_scan_looks_for_the_working_and_temp_folders_as_whole_paths(tmp_path):
    cases = {
        "cwd": f'{{"note": "{os.getcwd()}/data.csv"}}',
        "tmp": f'{{"note": "{tempfile.gettempdir()}/x"}}',
        "home": f"see {os.path.expanduser('~')}/models",
    }
    for name, content in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        (folder / "README.md").write_text(content)
        with pytest.raises(UnsafePushError, match="README.md contains the local path"):
            scan(str(folder), [SECRET], [])
    fine = tmp_path / "fine"
    fine.mkdir()
    # A URL, or a longer folder name, is not this machine's path.
    (fine / "README.md").write_text(f"https://huggingface.co{tempfile.gettempdir()}/x {tempfile.gettempdir()}fs")
    scan(str(fine), [SECRET], [])
