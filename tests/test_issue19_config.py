"""Issue #19 items 4-7 and 12: settings that used to spoil a run without a word.

NaN/inf and fractional options, a diverging loss, zero training steps, the reported split's role, --torch_compile,
an `accelerate launch` that starts fewer processes than asked, and the exported tokenizer's truncation.
"""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml
from safetensors.torch import load_file
from transformers import AutoTokenizer, pipeline

from conftest import (
    ROOT,
    cache_trainer,
    cpu_config,
    make_split,
    make_texts,
    make_tokenizer,
    save_tiny_model,
    tiny_bert,
    tiny_teacher_cache,
)
from hf_lelp import LELPConfig, attach_subclass_head
from hf_lelp.base.errors import UserError
from hf_lelp.commands import main
from hf_lelp.example_configs import accelerate_config_folder
from hf_lelp.training.arguments import DataArguments, ModelArguments, parse_with_config
from hf_lelp.training.launch import requested_processes

NAMES = ["neg", "pos"]
MAX_LENGTH = 8  # tokens, [CLS] and [SEP] included: the long texts below have 14


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """csv files whose texts are longer than MAX_LENGTH tokens, a tiny teacher and a tiny student checkpoint."""
    folder = tmp_path_factory.mktemp("issue19_config")
    for split, n, seed in (("train", 48, 0), ("test", 24, 1)):
        texts, labels, _ = make_texts(n, 2, seed)
        tails, _, _ = make_texts(n, 2, seed + 10)  # words past the limit, of an unrelated class
        long_texts = [f"{text} {tail}" for text, tail in zip(texts, tails)]
        frame = pd.DataFrame({"text": long_texts, "label": [NAMES[y] for y in labels]})
        frame.to_csv(folder / f"{split}.csv", index=False)
    save_tiny_model(folder / "teacher", seed=1, label_names=NAMES)
    save_tiny_model(folder / "student", seed=2, label_names=NAMES)
    return folder


def distill_argv(folder, output_dir, *extra) -> list[str]:
    return [
        "distill",
        "--train_file",
        str(folder / "train.csv"),
        "--test_file",
        str(folder / "test.csv"),
        "--teacher",
        str(folder / "teacher"),
        "--student",
        str(folder / "student"),
        "--student_num_layers",
        "1",
        "--max_length",
        str(MAX_LENGTH),
        "--output_dir",
        str(output_dir),
        "--cache_dir",
        str(folder / "cache"),
        "--num_subclasses",
        "2",
        "--per_device_train_batch_size",
        "8",
        "--max_steps",
        "3",
        "--learning_rate",
        "1e-3",
        "--use_cpu",
        "true",
        "--report_to",
        "none",
        "--save_strategy",
        "no",
        "--disable_tqdm",
        "true",
        *map(str, extra),
    ]


def user_error(capsys, argv: list[str]) -> str:
    """Run `hf-lelp ARGV` (the console script's main) expecting exit code 2; returns the error paragraph."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr
    return next(line for line in stderr.splitlines() if line.startswith("hf-lelp: error: "))


# --- item 4: non-finite options, a diverging loss ------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag,value",
    [("temperature", "nan"), ("feature_loss_weight", "nan"), ("learning_rate", "nan"), ("max_grad_norm", "inf")],
)
def test_a_non_finite_option_on_the_command_line_is_refused(files, tmp_path, capsys, flag, value):
    line = user_error(capsys, distill_argv(files, tmp_path / "out", f"--{flag}", value))
    assert f"--{flag} is {value}" in line and "finite" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "key,value", [("temperature", ".nan"), ("weight_decay", ".inf"), ("subclass_temperature", '"nan"')]
)
def test_a_non_finite_option_in_a_yaml_config_is_refused_naming_the_file(files, tmp_path, capsys, key, value):
    config = tmp_path / "run.yaml"
    config.write_text(f"{key}: {value}\n")
    line = user_error(capsys, ["distill", str(config), *distill_argv(files, tmp_path / "out")[1:]])
    assert f"--{key} is" in line and str(config) in line


def test_train_teacher_refuses_a_nan_learning_rate(files, tmp_path, capsys):
    # train-teacher parses plain TrainingArguments: the check runs on every parsed dataclass
    argv = ["train-teacher", "--train_file", str(files / "train.csv"), "--teacher_model", str(files / "student")]
    line = user_error(
        capsys, [*argv, "--output_dir", str(tmp_path / "t"), "--learning_rate", "nan", "--use_cpu", "true"]
    )
    assert "--learning_rate is nan" in line


def test_the_python_api_refuses_nan_settings(tmp_path):
    for options in ({"temperature": float("nan")}, {"auto_subclass_temperatures": [1.0, float("inf")]}):
        with pytest.raises(UserError, match="finite"):
            LELPConfig(output_dir=str(tmp_path), use_cpu=True, **options)
    with pytest.raises(UserError, match="lora_dropout"):
        ModelArguments(lora_dropout=float("nan"))


def test_a_loss_that_becomes_nan_stops_the_run_at_its_step_and_exports_nothing(files, tmp_path, capsys):
    # Finite options, but a learning rate that makes the weights overflow after the first update.
    out = tmp_path / "out"
    argv = distill_argv(files, out, "--method", "ce", "--learning_rate", "1e30", "--max_steps", "6")
    line = user_error(capsys, argv)
    assert "The training loss became nan at optimizer step 2" in line and "--learning_rate" in line
    assert not list(out.glob("*.safetensors")) and not (out / "results.json").exists()


# --- item 5: zero steps, fractional integers from config files, the reported split's role -------------------------


def test_zero_epochs_is_refused(files, tmp_path, capsys):
    argv = [a for a in distill_argv(files, tmp_path / "out") if a not in ("--max_steps", "3")]
    line = user_error(capsys, [*argv, "--num_train_epochs", "0"])
    assert "--num_train_epochs 0" in line and "zero steps" in line
    with pytest.raises(UserError, match="zero steps"):
        LELPConfig(output_dir=str(tmp_path), use_cpu=True, num_train_epochs=0.0)


@pytest.mark.parametrize(
    "name,text",
    [("run.yaml", "num_subclasses: 2.5\n"), ("run.json", '{"max_length": 16.5}'), ("t.yaml", "lora_r: 7.2\n")],
)
def test_a_fractional_integer_in_a_config_file_is_refused(files, tmp_path, capsys, name, text):
    config = tmp_path / name
    config.write_text(text)
    line = user_error(capsys, ["distill", str(config), *distill_argv(files, tmp_path / "out")[1:]])
    assert "takes a whole number" in line and str(config) in line


def test_a_whole_float_in_a_config_file_becomes_an_integer(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"num_subclasses": 4.0, "max_length": 32.0, "output_dir": str(tmp_path)}))
    data_args, _, args = parse_with_config(
        (DataArguments, ModelArguments, LELPConfig), [str(config), "--use_cpu", "true"]
    )
    assert (args.num_subclasses, data_args.max_length) == (4, 32)
    assert isinstance(args.num_subclasses, int) and isinstance(data_args.max_length, int)


@pytest.fixture(scope="module")
def reported_on_train(files, tmp_path_factory):
    """A --method ce student reported on its own training split, on texts longer than --max_length."""
    out = tmp_path_factory.mktemp("reported_on_train") / "student"
    main(distill_argv(files, out, "--method", "ce", "--eval_split", "train", "--max_steps", "6"))
    return out


def test_reporting_on_the_training_split_says_it_is_not_held_out(reported_on_train):
    card = (reported_on_train / "README.md").read_text(encoding="utf-8")
    line = next(line for line in card.splitlines() if line.startswith("- `train`"))
    assert "training" in line and "not a held-out estimate" in line
    assert "never used for any choice" not in line


# --- item 12: the export reads texts as training did ---------------------------------------------------------------


def test_the_export_truncates_long_texts_at_the_training_max_length(files, reported_on_train):
    with open(reported_on_train / "tokenizer_config.json", encoding="utf-8") as handle:
        assert json.load(handle)["model_max_length"] == MAX_LENGTH
    results = json.loads((reported_on_train / "results.json").read_text(encoding="utf-8"))
    assert results["export_agreement"] == 1.0 and results["export_examples"] == 48
    texts = list(pd.read_csv(files / "train.csv")["text"])
    tokenizer = AutoTokenizer.from_pretrained(reported_on_train)
    assert min(len(tokenizer(text)["input_ids"]) for text in texts) > MAX_LENGTH  # every text is cut
    # What a user does: the card's snippet (truncation=True) against the first MAX_LENGTH tokens of each text.
    classifier = pipeline("text-classification", model=str(reported_on_train), device=-1)
    shown = [p["label"] for p in classifier(texts, truncation=True)]
    cut = [tokenizer.decode(tokenizer(t)["input_ids"][1 : MAX_LENGTH - 1]) for t in texts]
    assert shown == [p["label"] for p in classifier(cut)]
    card = (reported_on_train / "README.md").read_text(encoding="utf-8")
    assert f"truncation=True)  # reads at most {MAX_LENGTH} tokens" in card


def test_a_trained_teacher_also_truncates_at_its_training_max_length(files, tmp_path):
    out = tmp_path / "teacher"
    argv = ["train-teacher", "--train_file", str(files / "train.csv"), "--teacher_model", str(files / "student")]
    main([*argv, "--max_length", str(MAX_LENGTH), "--output_dir", str(out), "--max_steps", "1", "--use_cpu", "true"])
    with open(out / "tokenizer_config.json", encoding="utf-8") as handle:
        assert json.load(handle)["model_max_length"] == MAX_LENGTH


# --- item 6: --torch_compile --------------------------------------------------------------------------------------


def test_torch_compile_on_the_command_line_compiles_the_student_and_exports_plain_weights(files, tmp_path):
    torch._dynamo.reset()
    counters = torch._dynamo.utils.counters
    counters.clear()
    out = tmp_path / "out"
    main(distill_argv(files, out, "--method", "lelp", "--torch_compile", "true"))
    assert counters["stats"]["unique_graphs"] > 0  # dynamo compiled the student's forward
    keys = load_file(str(out / "model.safetensors"))
    assert keys and not [key for key in keys if "_orig_mod" in key]
    assert not [key for key in load_file(str(out / "lelp_subclass_head.safetensors")) if "_orig_mod" in key]
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["export_reloaded_with"].startswith("pipeline") and results["export_agreement"] == 1.0


def test_torch_compile_in_the_python_api_trains_with_the_subclass_head(tmp_path):
    tokenizer = make_tokenizer()
    split = make_split(32)
    cache = tiny_teacher_cache(tmp_path / "cache", tokenizer, split, ["class_0", "class_1"], max_length=16)
    student = tiny_bert(2, seed=2)
    head = attach_subclass_head(student, 2, 2)
    before = head.weight.detach().clone()
    args = cpu_config(
        tmp_path / "out", num_subclasses=2, torch_compile=True, max_steps=3, per_device_train_batch_size=8
    )
    trainer = cache_trainer(student, args, cache, tokenizer, split, 16, processing_class=tokenizer)
    trainer.train()
    assert isinstance(trainer.model_wrapped, torch._dynamo.eval_frame.OptimizedModule)
    assert not torch.equal(before, head.weight.detach())  # the subclass head's hook ran inside the compiled model
    trainer.save_model(str(tmp_path / "out"))
    assert not [key for key in load_file(str(tmp_path / "out" / "model.safetensors")) if "_orig_mod" in key]


# --- item 7: accelerate launch with fewer processes than asked, the shipped CPU config ------------------------------


def test_accelerate_launch_that_starts_one_of_two_processes_says_so(files, tmp_path):
    command = [
        *(sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "2"),
        *("-m", "hf_lelp.commands", "cache", "--train_file", str(files / "train.csv")),
        *("--teacher", str(files / "teacher"), "--cache_dir", str(tmp_path / "cache")),
        *("--output_dir", str(tmp_path / "out"), "--max_length", str(MAX_LENGTH), "--use_cpu", "true"),
    ]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "accelerate launch was asked for 2 processes, but this run has 1" in result.stderr
    assert "hf-lelp accelerate-config --write cpu_2proc.yaml" in result.stderr


def test_the_requested_process_count_is_read_from_the_launcher():
    env = {"ACCELERATE_MIXED_PRECISION": "no"}
    launcher = [sys.executable, "-m", "accelerate.commands.launch"]
    assert requested_processes(env, [*launcher, "--num_processes", "2", "-m", "x", "--num_processes", "5"]) == 2
    assert requested_processes(env, ["python", "/bin/accelerate", "launch", "--num-processes=3", "run.py"]) == 3
    config = os.path.join(ROOT, "recipes", "accelerate_configs", "cpu_2proc.yaml")
    assert requested_processes(env, [*launcher, "--config_file", config, "run.py"]) == 2
    assert requested_processes({}, [*launcher, "--num_processes", "2", "run.py"]) is None  # not under accelerate
    assert requested_processes(env, ["python", "run.py", "--num_processes", "2"]) is None  # not the launcher's flag


def test_the_cpu_accelerate_config_ships_with_the_package(tmp_path, capsys):
    recipe = os.path.join(ROOT, "recipes", "accelerate_configs", "cpu_2proc.yaml")
    with open(recipe, encoding="utf-8") as handle:
        expected = handle.read()
    assert os.path.samefile(accelerate_config_folder() / "cpu_2proc.yaml", recipe)  # one file, shipped as package data
    main(["accelerate-config"])
    assert capsys.readouterr().out == expected
    target = tmp_path / "cpu.yaml"
    main(["accelerate-config", "--write", str(target)])
    assert target.read_text(encoding="utf-8") == expected
    assert "accelerate launch --config_file" in capsys.readouterr().out
    assert "exists already" in user_error(capsys, ["accelerate-config", "--write", str(target)])
    assert "No accelerate config named" in user_error(capsys, ["accelerate-config", "nope"])
    assert yaml.safe_load(expected)["num_processes"] == 2
