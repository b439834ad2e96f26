"""The recipes end to end on tiny saved models and local files: YAML + CLI flags, python and accelerate launch."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from conftest import ROOT, run, run_distil

pytestmark = pytest.mark.slow


def test_teacher_recipe_writes_model_and_results(project):
    results = json.loads((project / "teacher" / "teacher_results.json").read_text())
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert json.loads((project / "teacher" / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}


def test_distill_with_python_yaml_and_cli_overrides(project):
    out = project / "lelp"
    run_distil(project, out, "--num_subclasses", "3", "--num_train_epochs", "2")
    results = json.loads((out / "results.json").read_text())
    assert results["method"] == "lelp" and results["export_agreement"] == 1.0
    lelp = json.loads((out / "lelp_config.json").read_text())
    assert lelp["num_subclasses"] == 3  # the CLI flag overrode the YAML's 2
    assert json.loads((out / "config.json").read_text())["id2label"] == {"0": "neg", "1": "pos"}
    card = (out / "README.md").read_text()
    assert "S = 3" in card and "2409.20449" in card and "lelp" in card.split("---")[1]
    assert (project / "cache" / "meta.json").is_file()
    # Rerunning reuses the cache and the projections instead of running the teacher again.
    meta_time = os.path.getmtime(project / "cache" / "meta.json")
    run_distil(project, out, "--num_subclasses", "3", "--num_train_epochs", "1")
    assert os.path.getmtime(project / "cache" / "meta.json") == meta_time


def test_distill_under_accelerate_launch(project):
    out = project / "accelerate"
    run(
        [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--num_processes",
            "1",
            "--cpu",
            "recipes/distill.py",
            str(project / "distill.yaml"),
            "--output_dir",
            str(out),
            "--method",
            "kd",
        ]
    )
    assert json.loads((out / "results.json").read_text())["method"] == "kd"


@pytest.mark.bad_input
def test_unknown_yaml_key_is_a_clear_error(project, tmp_path):
    config = yaml.safe_load((project / "distill.yaml").read_text())
    config["num_subclases"] = 3
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "recipes/distill.py", str(tmp_path / "bad.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode != 0 and "Unknown keys" in result.stderr and "num_subclases" in result.stderr
