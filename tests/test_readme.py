"""The README's quick start runs as written (only its data and model names swapped for tiny local ones)."""

import json
import os
import re
import shlex
import subprocess
import sys

import datasets
import pandas as pd
import pytest
from transformers import pipeline

from conftest import ROOT, make_texts, save_tiny_model
from hf_lelp import commands

pytestmark = pytest.mark.slow


def quick_start() -> str:
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split("## Quick start in Python", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_quick_start_has_no_unused_or_undefined_names():
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--select", "F", "--stdin-filename", "quick_start.py", "-"],
        input=quick_start(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout


def test_quick_start_runs_outside_the_checkout(tmp_path, monkeypatch):
    names = ["neg", "pos"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    splits = {}
    for split, n, seed in (("train", 96, 0), ("test", 32, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        splits[split] = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    teacher = save_tiny_model(tmp_path / "models" / "teacher", hidden=48, seed=1, label_names=names)
    student = save_tiny_model(tmp_path / "models" / "student", hidden=32, layers=2, seed=2, label_names=names)
    swaps = {
        'load_text_classification("rotten_tomatoes").splits': "README_DATA",
        '"my_teacher"': repr(teacher),
        '"all-MiniLM-L6-v2"': repr(student),
    }
    code = quick_start()
    for old, new in swaps.items():
        assert old in code, f"the README's quick start no longer has {old}: update this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)  # outside the checkout: nothing of runs/ or recipes/ is at hand
    namespace = {"README_DATA": datasets.DatasetDict(splits)}
    exec(compile(code, "README quick start", "exec"), namespace)
    saved = tmp_path / "my_student"
    assert (saved / "model.safetensors").is_file()
    assert json.loads((saved / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    # The cache went to the default location ($HF_LELP_CACHE/teacher_caches/<teacher>-<key>), not into the cwd.
    cache = namespace["trainer"].teacher_cache.path
    assert cache.startswith(os.path.join(os.environ["HF_LELP_CACHE"], "teacher_caches", "teacher-")), cache
    assert sorted(os.listdir(tmp_path)) == ["models", "my_student"]


def readme_section_blocks(title: str, language: str) -> list[str]:
    readme = open(os.path.join(ROOT, "README.md"), encoding="utf-8").read()
    section = readme.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(rf"```{language}\n(.*?)```", section, re.S)


def shell_commands(block: str) -> list[list[str]]:
    """The commands of a ```bash block (continuation lines joined, comments dropped)."""
    commands = [shlex.split(line, comments=True) for line in block.replace("\\\n", " ").splitlines()]
    return [argv for argv in commands if argv]


# What makes the README's commands fast here: tiny models, short inputs, one epoch (later flags win).
FAST = ["--max_length", "16", "--per_device_train_batch_size", "16", "--report_to", "none", "--use_cpu", "true"]
FAST += ["--save_strategy", "no", "--disable_tqdm", "true"]
FAST_FLAGS = {
    "train-teacher": FAST + ["--num_train_epochs", "3", "--learning_rate", "1e-3"],
    "distill": FAST + ["--num_subclasses", "2", "--num_train_epochs", "1"],
}


def test_your_own_data_runs_outside_the_checkout(tmp_path, monkeypatch):
    """The section's CLI commands on a user's CSV files (columns review/sentiment, string labels, 3 classes), then
    its Python block on the same files as a DatasetDict, in a folder that is not the checkout."""
    names = ["negative", "neutral", "positive"]  # sorted: how the CLI and class_encode_column order them
    (tmp_path / "my_data").mkdir()
    for split, n, seed in (("train", 60, 0), ("test", 24, 1)):
        texts, labels, _ = make_texts(n, 3, seed)
        frame = pd.DataFrame({"review": texts, "sentiment": [("negative", "positive", "neutral")[y] for y in labels]})
        frame.to_csv(tmp_path / "my_data" / f"{split}.csv", index=False)
    init = save_tiny_model(tmp_path / "models" / "init", 3, hidden=32, layers=2, seed=2)
    bash, python = readme_section_blocks("Your own data", "bash") + readme_section_blocks("Your own data", "python")
    monkeypatch.chdir(tmp_path)
    for argv in shell_commands(bash):
        assert argv[0] == "hf-lelp", argv
        argv = [init if arg == "all-MiniLM-L6-v2" else arg for arg in argv[1:]]
        pretrained = argv[0] == "distill" and "--student_config" not in argv  # a from-scratch student has none
        commands.main(
            argv + FAST_FLAGS[argv[0]] + (["--student", init, "--student_num_layers", "1"] if pretrained else [])
        )
    results = json.loads((tmp_path / "my_student" / "results.json").read_text())
    assert results["train_examples"] == 60 and results["test_examples"] == 24, results
    for folder in ("my_teacher", "my_student"):
        assert json.loads((tmp_path / folder / "config.json").read_text())["id2label"] == dict(
            (str(i), name) for i, name in enumerate(names)
        )
    assert "train.csv" in (tmp_path / "my_student" / "README.md").read_text()
    tiny = json.loads((tmp_path / "my_tiny_student" / "config.json").read_text())
    assert (tiny["num_hidden_layers"], tiny["hidden_size"], tiny["id2label"]["0"]) == (2, 128, names[0])
    assert "**trained from scratch**" in (tmp_path / "my_tiny_student" / "README.md").read_text()
    assert "all-MiniLM-L6-v2" in python, "the README's Python block no longer names the student: update this test"
    namespace: dict = {}
    exec(compile(python.replace('"all-MiniLM-L6-v2"', repr(init)), "README: your own data", "exec"), namespace)
    assert len(namespace["trainer"].train_dataset) == 60
    config = json.loads((tmp_path / "my_student_py" / "config.json").read_text())
    assert config["id2label"] == {str(i): name for i, name in enumerate(names)}
    answers = pipeline("text-classification", model=str(tmp_path / "my_student_py"), device=-1)(["great fun"])
    assert answers[0]["label"] in names
