"""Issue 20 item 11: one error contract. A user's mistake or the machine's state ends as one `hf-lelp: error:`
paragraph and exit code 2, never a traceback: a folder in use, a refused push, a full disk (checkpoint or final
save), a mistyped dataset name, --max_length beyond the models' positions, a student classifier of another size,
a resume with another --lora_r; and every exception class hf-lelp defines goes through the one handler."""

import importlib
import inspect
import os
import pkgutil
import subprocess
import sys

import huggingface_hub.hf_api
import pandas as pd
import pytest
from huggingface_hub import HfApi, RepoUrl

import hf_lelp
from conftest import ROOT, hold, make_texts, save_tiny_model
from hf_lelp.base.errors import StateError, UserError, run_cli, user_error_message
from hf_lelp.commands import main

pytestmark = pytest.mark.bad_input
HINT = "(run with --debug or HF_LELP_DEBUG=1 for the traceback)"
NAMES = ["neg", "pos"]
TOKEN = "hf_contracttesttoken"
OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """csv files, a tiny teacher and students (2-class, 3-class); the models hold 64 positions."""
    folder = tmp_path_factory.mktemp("contract")
    for split, n, seed in (("train", 48, 0), ("test", 16, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        pd.DataFrame({"text": texts, "label": [NAMES[y] for y in labels]}).to_csv(folder / f"{split}.csv", index=False)
    save_tiny_model(folder / "teacher", label_names=NAMES)
    save_tiny_model(folder / "student", seed=2, label_names=NAMES)
    save_tiny_model(folder / "student3", seed=2, num_labels=3)
    return folder


@pytest.fixture(autouse=True)
def plain_environment(monkeypatch):
    monkeypatch.delenv("HF_LELP_DEBUG", raising=False)
    monkeypatch.delenv("RANK", raising=False)


def distill_flags(files, out, cache, *extra) -> list[str]:
    flags = [
        "distill",
        "--train_file", files / "train.csv",
        "--test_file", files / "test.csv",
        "--teacher", files / "teacher",
        "--student", files / "student",
        "--student_num_layers", "1",
        "--cache_dir", cache,
        "--output_dir", out,
        "--max_length", "24",
        "--num_subclasses", "2",
        "--per_device_train_batch_size", "16",
        "--num_train_epochs", "1",
        "--save_strategy", "no",
        "--use_cpu", "true",
        "--report_to", "none",
        "--disable_tqdm", "true",
        *extra,
    ]  # fmt: skip
    return [str(flag) for flag in flags]


def one_paragraph(stderr: str) -> str:
    """The `hf-lelp: error:` paragraph of `stderr`: no traceback, nothing after it but the --debug hint."""
    assert "Traceback" not in stderr, stderr[-3000:]
    assert stderr.count("hf-lelp: error: ") == 1, stderr[-3000:]
    paragraph, hint = stderr[stderr.index("hf-lelp: error: ") :].rstrip("\n").rsplit("\n", 1)
    assert hint == HINT, stderr[-3000:]
    assert "\n\n" not in paragraph and len(paragraph) < 1500, paragraph
    return paragraph


def cli_error(capsys, argv: list[str]) -> str:
    """Run `hf-lelp ARGV` in this process (the console script's main): exit code 2 and one paragraph."""
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    stderr = capsys.readouterr().err
    assert exit_info.value.code == 2, stderr[-3000:]
    return one_paragraph(stderr)


def cli_process(argv: list[str], **env) -> str:
    """Run `python -m hf_lelp.commands ARGV` in a child process: exit code 2 and one paragraph."""
    result = subprocess.run(
        [sys.executable, "-m", "hf_lelp.commands", *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **OFFLINE, **env},
    )
    assert result.returncode == 2, result.stderr[-3000:]
    assert "Traceback" not in result.stdout
    return one_paragraph(result.stderr)


# --- every class hf-lelp defines is a user error ------------------------------------------------------------------


def package_error_classes() -> list[type]:
    """The exception classes defined in hf_lelp's modules (imported by walking the package)."""
    found = {}
    for module_info in pkgutil.walk_packages(hf_lelp.__path__, prefix="hf_lelp."):
        module = importlib.import_module(module_info.name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == module.__name__:
                found[f"{cls.__module__}.{cls.__qualname__}"] = cls
    return [found[name] for name in sorted(found)]


def raiser(error: BaseException):
    def command(argv):
        raise error

    return command


def test_every_exception_class_of_the_package_goes_through_the_handler(capsys):
    classes = package_error_classes()
    names = {cls.__name__ for cls in classes}
    known = {"UserError", "StateError", "FolderInUseError", "UnsafePushError", "CacheMismatchError"}
    assert known <= names, names  # the walk found the package's classes
    for cls in classes:
        message = f"{cls.__name__}: what went wrong, where, and the fix."
        error = cls(message)
        assert user_error_message(error) == message, cls
        with pytest.raises(SystemExit) as exit_info:
            run_cli(raiser(error), [])
        assert exit_info.value.code == 2, cls
        assert one_paragraph(capsys.readouterr().err) == f"hf-lelp: error: {message}"


def test_bugs_keep_their_traceback_and_disk_errors_do_not():
    assert user_error_message(RuntimeError("a bug")) is None
    assert user_error_message(TypeError("a bug")) is None
    try:  # how PyTorch's zip writer reports a full disk: no errno, the stream error as context
        try:
            raise RuntimeError("basic_ios::clear: iostream error")
        except RuntimeError:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598") from None
    except RuntimeError as error:
        torch_error = error
    assert "the disk is most likely full" in user_error_message(torch_error)
    safetensors_error = Exception("Error while serializing: I/O error: No space left on device (os error 28)")
    assert user_error_message(safetensors_error).startswith("No space left on device while writing")
    assert issubclass(UserError, ValueError) and issubclass(StateError, RuntimeError)  # callers may catch either


# --- each scenario, through the real command ---------------------------------------------------------------------


def test_a_second_run_on_the_same_output_dir_or_cache(files, tmp_path, capsys):
    for held, what in ((tmp_path / "out", "output folder"), (tmp_path / "cache", "teacher cache")):
        holder = hold(held)
        try:
            message = cli_error(capsys, distill_flags(files, tmp_path / "out", tmp_path / "cache"))
        finally:
            holder.kill()
            holder.wait()
        assert f"The {what} {held} is in use by another hf-lelp run" in message
        assert f'"pid": {holder.pid}' in message


def test_a_push_refused_by_the_scan(files, tmp_path, capsys, monkeypatch):
    """A class name that is the Hub token reaches config.json: the scan refuses the push, nothing is uploaded."""
    uploads = []
    monkeypatch.setattr(HfApi, "create_repo", lambda api, repo_id, *a, **k: RepoUrl(f"https://hf.co/{repo_id}"))
    monkeypatch.setattr(HfApi, "create_commit", lambda api, *a, **k: uploads.append(a))
    monkeypatch.setattr(huggingface_hub.hf_api, "is_xet_available", lambda: False)
    frame = pd.read_csv(files / "train.csv").replace({"pos": TOKEN})
    frame.to_csv(tmp_path / "train.csv", index=False)
    pd.read_csv(files / "test.csv").replace({"pos": TOKEN}).to_csv(tmp_path / "test.csv", index=False)
    save_tiny_model(tmp_path / "teacher", label_names=sorted(["neg", TOKEN]))
    flags = distill_flags(files, tmp_path / "out", tmp_path / "cache")
    flags[flags.index("--train_file") + 1] = str(tmp_path / "train.csv")
    flags[flags.index("--test_file") + 1] = str(tmp_path / "test.csv")
    flags[flags.index("--teacher") + 1] = str(tmp_path / "teacher")
    flags += ["--push_to_hub", "true", "--hub_model_id", "me/contract", "--hub_token", TOKEN]
    message = cli_error(capsys, flags)
    assert message.startswith("hf-lelp: error: Push refused: ") and "contains the Hub token" in message
    assert "Nothing was uploaded" in message and uploads == []


def test_a_mistyped_dataset_name(files, tmp_path):
    message = cli_process(["distill", "--dataset", "rotten_tomatos", "--teacher", str(files / "teacher")])
    for part in ("'rotten_tomatos' is not an offline name", "not a path", "the Hub is not reachable"):
        assert part in message
    assert "Did you mean 'rotten_tomatoes'?" in message
    assert "tweets" in message and "20newsgroups_4class" in message  # the offline names are listed


def test_a_mistyped_student_name(files, tmp_path):
    argv = distill_flags(files, tmp_path / "out", tmp_path / "cache")
    argv[argv.index("--student") + 1] = "sentence-transformers/all-MiniLM-L6-v3"
    message = cli_process(argv)
    assert "--student sentence-transformers/all-MiniLM-L6-v3 is not a model folder here" in message
    assert "all-MiniLM-L6-v2" in message and "the Hub could not serve it" in message
    assert not (tmp_path / "cache").exists()  # refused before the teacher pass


def test_max_length_beyond_the_models_positions(files, tmp_path, capsys):
    flags = distill_flags(files, tmp_path / "out", tmp_path / "cache")
    flags[flags.index("--max_length") + 1] = "100"
    message = cli_error(capsys, flags)
    assert "--max_length 100 is longer than a model's position embeddings" in message
    assert f"--student {files / 'student'} takes at most 64 tokens" in message
    assert f"--teacher {files / 'teacher'} takes at most 64 tokens" in message
    assert "Pass --max_length 64 or less" in message
    assert not (tmp_path / "cache").exists()  # refused before the teacher pass


def test_max_length_beyond_the_teachers_positions_when_training_it(files, tmp_path, capsys):
    argv = ["train-teacher", "--train_file", str(files / "train.csv"), "--teacher_model", str(files / "student")]
    argv += ["--output_dir", str(tmp_path / "teacher"), "--max_length", "65", "--use_cpu", "true"]
    message = cli_error(capsys, argv)
    assert f"--teacher_model {files / 'student'} takes at most 64 tokens" in message


def test_a_student_whose_classifier_has_another_number_of_labels(files, tmp_path, capsys):
    flags = distill_flags(files, tmp_path / "out", tmp_path / "cache")
    flags[flags.index("--student") + 1] = str(files / "student3")
    message = cli_error(capsys, flags)
    assert f"--student {files / 'student3'} is a classifier with 3 outputs" in message
    assert "the data has 2 classes ['neg', 'pos']" in message and "Pass a checkpoint with a 2-class" in message
    assert not (tmp_path / "cache").exists()


def test_resuming_with_another_lora_rank(files, tmp_path, capsys):
    flags = distill_flags(files, tmp_path / "out", tmp_path / "cache", "--use_peft", "true")
    flags[flags.index("--save_strategy") + 1] = "epoch"
    main(flags + ["--lora_r", "4"])
    assert (tmp_path / "out" / "checkpoint-3").is_dir()
    capsys.readouterr()
    message = cli_error(capsys, flags + ["--lora_r", "8", "--resume_from_checkpoint", "true"])
    assert "lora_r" in message and "checkpoint-3" in message


# --- a full disk, on a real small file system (tests/test_disk_full.py's tmpfs) ------------------------------------

CHILD = """
import sys
from hf_lelp.commands import main

main(sys.argv[2:] + ["--output_dir", sys.argv[1] + "/out"])
"""


def full_disk_run(files, tmp_path, size_bytes: int, file_limit_bytes: int, *extra) -> tuple[str, str]:
    from test_disk_full import run_on_small_disk

    flags = distill_flags(files, "unused", tmp_path / "cache", *extra)
    at = flags.index("--output_dir")
    del flags[at : at + 2]
    script = CHILD.replace("sys.argv[2:]", repr(flags))
    result, mechanism, _ = run_on_small_disk(tmp_path, script, size_bytes, file_limit_bytes)
    assert result.returncode == 2, f"[{mechanism}] rc={result.returncode}\n{result.stderr[-3000:]}"
    return one_paragraph(result.stderr), mechanism


@pytest.mark.fault
def test_a_full_disk_during_a_checkpoint(files, tmp_path):
    # The checkpoint's weights (~55 KiB) fit, its optimizer state (~125 KiB) does not: PyTorch's zip writer fails
    # with "[enforce fail at inline_container.cc]" and no errno.
    message, mechanism = full_disk_run(files, tmp_path, 160 * 1024, 100 * 1024, "--save_strategy", "epoch")
    assert "checkpoint-3/optimizer.pt" in message and "--resume_from_checkpoint true" in message, message
    if mechanism.startswith("tmpfs"):
        assert "PyTorch failed writing" in message and "the disk is most likely full" in message, message


@pytest.mark.fault
def test_a_full_disk_during_the_final_save(files, tmp_path):
    message, mechanism = full_disk_run(files, tmp_path, 32 * 1024, 32 * 1024)
    assert "model.safetensors" in message, message
    if mechanism.startswith("tmpfs"):
        assert "No space left on device while writing" in message, message
