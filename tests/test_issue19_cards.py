"""Issue 19 items 8-11 and issue 20 item 12: the installed package as its docs say (shipped example configs, the
teacher hint, help texts, extras), and model cards that say what was trained and whose snippets run."""

from __future__ import annotations

import json
import os
import re

import pandas as pd
import pytest
import yaml
from huggingface_hub import ModelCard
from transformers import DataCollatorWithPadding, TrainingArguments

from conftest import ROOT, make_texts, make_tokenizer, save_tiny_model, tiny_bert
from hf_lelp import commands
from hf_lelp.base import extras
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.example_configs import config_folder, example_names
from hf_lelp.hub.card import render_model_card, run_card_context, static_card_context
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.trainer import LELPTrainer

# Label names a user may have: HTML, Markdown, mathtext, a line break followed by YAML's document marker.
ODD_LABELS = ["<script>alert(1)</script>", "pos $x^$ | *y*\n---\ntitle: z"]


def fail(argv: list[str], capsys) -> str:
    """Run `hf-lelp ARGV` expecting a user error; its one paragraph."""
    capsys.readouterr()  # what came before (a progress bar of a fixture) is not this command's
    with pytest.raises(SystemExit) as stop:
        commands.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("hf-lelp: error: ") and "Traceback" not in err, err
    return err


# ------------------------------------------------------------------------- item 8: the shipped example configs
def test_the_example_configs_ship_from_recipes_configs_one_copy():
    # In a checkout the package reads recipes/configs itself; the wheel maps that folder to hf_lelp/configs
    # (tests/test_wheel.py checks pyproject.toml, tests/wheel_smoke.py the built wheel).
    assert os.path.samefile(config_folder(), os.path.join(ROOT, "recipes", "configs"))
    assert example_names() == ["distill_rotten_tomatoes", "teacher_rotten_tomatoes"]


def test_example_config_prints_lists_and_writes_a_copy(tmp_path, capsys):
    commands.main(["example-config"])
    assert capsys.readouterr().out.split() == example_names()
    target = tmp_path / "mine.yaml"
    commands.main(["example-config", "teacher_rotten_tomatoes", "--write", str(target)])
    assert target.read_bytes() == (config_folder() / "teacher_rotten_tomatoes.yaml").read_bytes()
    assert "hf-lelp train-teacher" in capsys.readouterr().out
    assert "exists already" in fail(["example-config", "teacher_rotten_tomatoes", "--write", str(target)], capsys)
    assert "distill_rotten_tomatoes" in fail(["example-config", "nope"], capsys)


def test_a_config_named_outside_the_checkout_runs_and_its_missing_teacher_points_to_the_command(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)  # an installed user's folder: no recipes/, no runs/demo/teacher
    # The README's path form says how to get the shipped file instead of only "not found".
    err = fail(["train-teacher", "recipes/configs/teacher_rotten_tomatoes.yaml"], capsys)
    assert "hf-lelp train-teacher teacher_rotten_tomatoes" in err and "example-config" in err
    # By name, the shipped distill config is read (its teacher runs/demo/teacher is looked up, relative to here),
    # and the missing teacher is explained with the installed command, not a recipe script users do not have.
    student = save_tiny_model(tmp_path / "student_init")
    flags = ["--student", student, "--student_num_layers", "1", "--max_train_examples", "16"]
    err = fail(["distill", "distill_rotten_tomatoes", *flags, "--max_eval_examples", "8", "--use_cpu", "true"], capsys)
    assert "runs/demo/teacher" in err and "hf-lelp train-teacher" in err, err
    assert "recipes/train_teacher.py" not in err
    assert "neither a config file" in fail(["distill", "no_such_example"], capsys)


# ---------------------------------------------------------------- item 9: help text, the masked token round trip
def test_cache_dir_help_names_the_real_default(capsys):
    commands.main(["distill", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "$HF_LELP_CACHE/teacher_caches/" in out and "<output_dir>/teacher_cache" not in out
    assert "recipes/train_teacher.py" not in out and "hf-lelp train-teacher" in out


def test_lelp_config_from_training_arguments_to_dict_carries_no_token_placeholder(tmp_path):
    training_args = TrainingArguments(output_dir=str(tmp_path), hub_token="hf_secret", report_to="none")
    assert training_args.to_dict()["hub_token"] == "<HUB_TOKEN>"  # transformers masks it
    args = LELPConfig(**training_args.to_dict(), method="ce")
    assert args.hub_token is None  # the login token, not the literal "<HUB_TOKEN>"
    assert LELPConfig(output_dir=str(tmp_path), method="ce", hub_token="hf_secret").hub_token == "hf_secret"


# ------------------------------------------------------------------------------------ item 11: optional extras
def missing(monkeypatch, *modules: str) -> None:
    real = extras.installed
    monkeypatch.setattr(extras, "installed", lambda module: module not in modules and real(module))


def test_report_to_tensorboard_without_tensorboard_names_the_extra(tmp_path, monkeypatch, capsys):
    missing(monkeypatch, "tensorboard", "tensorboardX")
    for command in ("distill", "train-teacher"):
        err = fail([command, "--output_dir", str(tmp_path), "--report_to", "tensorboard"], capsys)
        assert "pip install 'hf-lelp[tensorboard]'" in err and "--report_to" in err, err


def test_report_to_tensorboard_without_tensorboard_names_the_extra_in_python(tmp_path, monkeypatch):
    from hf_lelp.base.errors import UserError

    missing(monkeypatch, "tensorboard", "tensorboardX")
    with pytest.raises(UserError, match=r"pip install 'hf-lelp\[tensorboard\]'"):
        LELPConfig(output_dir=str(tmp_path), method="ce", report_to="tensorboard")


def test_the_explorer_without_matplotlib_names_the_extra(tmp_path, monkeypatch, capsys):
    missing(monkeypatch, "matplotlib")
    err = fail(["explore", "--cache_dir", str(tmp_path / "cache"), "--output_dir", str(tmp_path / "out")], capsys)
    assert "pip install 'hf-lelp[explore]'" in err


def test_the_benchmark_without_matplotlib_names_the_extra_before_any_run(tmp_path, monkeypatch):
    import importlib.util

    from hf_lelp.base.errors import UserError

    spec = importlib.util.spec_from_file_location("benchmark_recipe", os.path.join(ROOT, "recipes", "benchmark.py"))
    recipe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(recipe)
    missing(monkeypatch, "matplotlib")
    with pytest.raises(UserError, match=r"pip install 'hf-lelp\[explore\]'"):
        recipe.main(["--work_dir", str(tmp_path / "work"), "--results_dir", str(tmp_path / "results")])
    assert not os.listdir(tmp_path)  # nothing prepared or run


def test_matplotlib_and_tensorboard_are_extras_and_dev_installs_them():
    import tomllib

    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as handle:
        project = tomllib.load(handle)["project"]
    assert not [r for r in project["dependencies"] if r.startswith(("matplotlib", "tensorboard"))]
    extras_ = project["optional-dependencies"]
    assert extras_["explore"] == ["matplotlib>=3.8"] and extras_["tensorboard"] == ["tensorboard>=2.15"]
    assert {"matplotlib>=3.8", "tensorboard>=2.15"} <= set(extras_["dev"])  # `make` installs .[dev]: tests run


def test_the_explorer_draws_class_names_with_mathtext_dollars(tmp_path):
    import torch

    from conftest import synthetic_fingerprint
    from hf_lelp.cache.writer import write_cache
    from hf_lelp.explore.report import write_report
    from hf_lelp.methods.projections import FitOptions, load_or_fit_projections

    n, d = 60, 8
    generator = torch.Generator().manual_seed(0)
    labels = torch.arange(n) % 2
    hidden = torch.randn(2, d, generator=generator)[labels] * 3 + torch.randn(n, d, generator=generator)
    weight, bias = torch.randn(2, d, generator=generator), torch.zeros(2)
    names = ["$x^$", "cost in $"]  # "$x^$" is invalid mathtext: matplotlib stopped the report on it
    fingerprint = synthetic_fingerprint(num_examples=n, label_names=names)
    cache = write_cache(str(tmp_path / "cache"), hidden, hidden @ weight.T + bias, labels, weight, bias, fingerprint)
    projections = load_or_fit_projections(cache, FitOptions(num_subclasses=2))
    fine = {i: ("$\\frac$", "b")[i % 3 == 0] for i in range(n)}
    report = write_report(cache, projections, [f"text {i}" for i in range(n)], str(tmp_path / "r"), fine_labels=fine)
    assert os.path.isfile(report) and len([f for f in os.listdir(tmp_path / "r") if f.endswith(".png")]) >= 3


# ------------------------------------------------------------- items 10 and 12: model cards and their snippets
@pytest.fixture(scope="module")
def odd_project(tmp_path_factory):
    """csv files whose labels are ODD_LABELS, and a tiny student checkpoint (runs use --method ce: no teacher)."""
    folder = tmp_path_factory.mktemp("cards")
    for split, n, seed in (("train", 48, 0), ("test", 16, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        frame = pd.DataFrame({"review": texts, "stars": [ODD_LABELS[y] for y in labels]})
        frame.to_csv(folder / f"{split}.csv", index=False)
    save_tiny_model(folder / "student_init", hidden=32, layers=2, seed=2)
    return folder


def distil_ce(project, out, *flags) -> dict:
    argv = ["distill", "--train_file", str(project / "train.csv")]
    argv += ["--test_file", str(project / "test.csv"), "--text_column", "review", "--label_column", "stars"]
    argv += ["--student", str(project / "student_init"), "--student_num_layers", "1", "--method", "ce"]
    argv += ["--max_length", "16", "--per_device_train_batch_size", "8", "--per_device_eval_batch_size", "16"]
    argv += ["--report_to", "none", "--use_cpu", "true", "--disable_tqdm", "true", "--output_dir", str(out)]
    commands.main([*argv, *flags])
    with open(out / "results.json", encoding="utf-8") as handle:
        return json.load(handle)


def read_card(folder) -> tuple[str, dict, str]:
    """(whole card, front matter, body); the front matter parses as YAML and as the Hub's card metadata."""
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert card.startswith("---\n")
    front_text, body = card[4:].split("\n---\n", 1)
    ModelCard(card)  # huggingface_hub's own parser (model-index included) accepts it
    return card, yaml.safe_load(front_text), body


def run_snippet(body: str, folder, monkeypatch) -> list[dict]:
    """Execute the card's Python code block as written, from the folder that holds the model (its name is the
    card's model id), and classify two texts with the `classifier` it builds."""
    (code,) = re.findall(r"```python\n(.*?)```", body, flags=re.S)
    monkeypatch.chdir(folder.parent)
    namespace: dict = {}
    exec(compile(code, "model card snippet", "exec"), namespace)
    return namespace["classifier"](["good fun", "dull mess"])


def check_body_is_escaped(body: str) -> None:
    assert "<script" not in body and "\n---" not in body and "\ntitle: z" not in body
    assert "&lt;script&gt;" in body  # shown as text, as the explorer does


@pytest.mark.bad_input  # issue 20 item 12, in docs/reliability.md
def test_a_full_fine_tune_card_says_the_steps_and_extra_metrics_and_its_snippet_runs(
    odd_project, tmp_path, monkeypatch
):
    out = tmp_path / "student"
    results = distil_ce(odd_project, out, "--max_steps", "3", "--extra_metrics", "precision", "recall")
    card, front, body = read_card(out)
    assert "3 optimizer steps (0.5 epochs)" in body and " 1.0 epochs" not in body  # 48 rows / 8 = 6 steps/epoch
    # --extra_metrics: in results.json, and now in the card (the model-index needs a Hub dataset: local data has
    # none, and no invented `local:<name>` id).
    assert f"precision {results['test_precision']:.4f}, recall {results['test_recall']:.4f}" in body
    assert "model-index" not in front and "local:" not in card and "datasets" not in front
    check_body_is_escaped(body)
    answers = run_snippet(body, out, monkeypatch)
    assert {a["label"] for a in answers} <= set(ODD_LABELS)


def test_a_lora_card_snippet_reloads_the_adapter_and_classifies(odd_project, tmp_path, monkeypatch):
    out = tmp_path / "adapter"
    distil_ce(odd_project, out, "--max_steps", "2", "--use_peft", "true", "--lora_r", "2", "--lora_target_modules",
              "query", "value")  # fmt: skip
    _, _, body = read_card(out)
    assert "AutoPeftModelForSequenceClassification" in body and "id2label" in body
    check_body_is_escaped(body)
    answers = run_snippet(body, out, monkeypatch)  # string id2label keys raised KeyError: 1 here
    assert {a["label"] for a in answers} <= set(ODD_LABELS)


def test_save_model_from_python_writes_a_card_whose_snippet_runs(tmp_path, monkeypatch):
    tokenizer = make_tokenizer()
    model = tiny_bert(num_labels=2, layers=1)
    model.config.id2label, model.config.label2id = {0: "neg", 1: "pos"}, {"neg": 0, "pos": 1}
    texts, labels, _ = make_texts(24, 2, 0)
    import datasets

    split = datasets.Dataset.from_dict({"example_id": list(range(24)), "text": texts, "label": labels})
    train = tokenize_split(split, tokenizer, 16)
    args = LELPConfig(output_dir=str(tmp_path / "run"), method="ce", max_steps=2, per_device_train_batch_size=8)
    args.report_to, args.use_cpu, args.save_strategy = [], True, "no"
    trainer = LELPTrainer(
        model=model,
        args=args,
        train_dataset=train,
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    out = tmp_path / "my_student"
    trainer.save_model(str(out))
    _, front, body = read_card(out)
    assert "# my_student" in body and "2 optimizer steps" in body and front["pipeline_tag"] == "text-classification"
    answers = run_snippet(body, out, monkeypatch)
    assert {a["label"] for a in answers} <= {"neg", "pos"}


def test_the_model_index_cites_only_hub_data_and_carries_the_extra_metrics(tmp_path):
    frame = pd.DataFrame({"text": ["good", "bad", "fine", "awful"] * 3, "label": ODD_LABELS * 6})
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = load_text_classification("x", data_files={"train": str(tmp_path / "train.csv")})
    args = LELPConfig(output_dir=str(tmp_path / "s"), method="ce", max_steps=5, report_to="none")
    results = {"test_accuracy": 0.9, "test_macro_f1": 0.8, "test_precision": 0.7, "test_trainer_accuracy": 0.9}
    meta = {"method": "ce", "num_subclasses": 1, "subclass_temperature": 1, "temperature": 1, "hard_label_weight": 0}
    for dataset, hub_id in (("someone/reviews", "someone/reviews"), ("rotten_tomatoes", None)):
        static = static_card_context(data, DataArguments(dataset=dataset), ModelArguments(), {}, [])
        context = run_card_context(static, args, meta, [], 5, results, "c", epoch=0.5)
        card = str(render_model_card(context))
        front = yaml.safe_load(card[4:].split("\n---\n", 1)[0])
        if hub_id:
            metrics = {m["type"]: m["value"] for m in front["model-index"][0]["results"][0]["metrics"]}
            assert metrics == {"accuracy": 0.9, "f1": 0.8, "precision": 0.7}
            assert front["model-index"][0]["results"][0]["dataset"]["type"] == hub_id
        else:
            assert "model-index" not in front and "local:" not in card
        assert "precision 0.7000" in card and "trainer_accuracy" not in card
        assert "5 optimizer steps (0.5 epochs)" in card
        check_body_is_escaped(card[4:].split("\n---\n", 1)[1])


@pytest.mark.bad_input  # issue 20 item 12, in docs/reliability.md
def test_label_names_in_the_body_are_text_and_plain_names_stay_as_typed():
    from hf_lelp.hub.card import markdown_text

    assert markdown_text("very_positive") == "very_positive" and markdown_text("sci.med") == "sci.med"
    assert markdown_text(ODD_LABELS[0]) == "&lt;script&gt;alert(1)&lt;/script&gt;"
    assert markdown_text(ODD_LABELS[1]) == r"pos \$x^\$ \| \*y\*\\n---\\ntitle: z"  # one line, no YAML marker
