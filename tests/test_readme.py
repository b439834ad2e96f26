"""The README's quick start runs as written (only its data and model names swapped for tiny local ones)."""

import os
import re
import subprocess
import sys

import datasets
import pytest

from conftest import ROOT, make_texts, save_tiny_model

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


def test_quick_start_runs(tmp_path, monkeypatch):
    names = ["neg", "pos"]
    features = datasets.Features({"text": datasets.Value("string"), "label": datasets.ClassLabel(names=names)})
    splits = {}
    for split, n, seed in (("train", 96, 0), ("test", 32, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        splits[split] = datasets.Dataset.from_dict({"text": texts, "label": labels}, features=features)
    teacher = save_tiny_model(tmp_path / "teacher", hidden=48, seed=1, label_names=names)
    student = save_tiny_model(tmp_path / "student", hidden=32, layers=2, seed=2, label_names=names)
    swaps = {
        'load_text_classification("rotten_tomatoes")': "load_text_classification(README_DATA)",
        '"runs/demo/teacher"': repr(teacher),
        'resolve_model("all-MiniLM-L6-v2")': repr(student),
        '"runs/my_cache"': repr(str(tmp_path / "cache")),
        '"runs/my_student"': repr(str(tmp_path / "student_out")),
    }
    code = quick_start()
    for old, new in swaps.items():
        assert old in code, f"the README's quick start no longer has {old}: update this test"
        code = code.replace(old, new)
    monkeypatch.chdir(tmp_path)
    namespace = {"README_DATA": datasets.DatasetDict(splits)}
    exec(compile(code, "README quick start", "exec"), namespace)
    assert (tmp_path / "student_out" / "model.safetensors").is_file()
    assert (tmp_path / "cache" / "meta.json").is_file()
