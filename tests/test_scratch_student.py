"""A student trained from scratch (`--student_config`, issue 22): built from a config with the teacher's tokenizer,
trained from the teacher cache alone, exported as a plain model that `pipeline` reloads without hf_lelp, carded as
what it is, and pushed through the real push path like any other student."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml
from test_publishing import hub  # noqa: F401  (the stand-in Hub behind the real push path)
from test_user_paths import FAST, ROWS, THREE, file_flags, id2label, user, user_texts  # noqa: F401
from transformers import AutoTokenizer, DataCollatorWithPadding

from conftest import cpu_config, make_split, make_tokenizer, tiny_teacher_cache
from hf_lelp import (
    FitOptions,
    LELPTrainer,
    attach_subclass_head,
    commands,
    fit_projections,
    student_from_config,
    tokenize_split,
)
from hf_lelp.methods.scratch_student import parse_student_config

SPEC = "layers=1,hidden=32,heads=2"


def test_a_student_config_is_a_preset_pairs_or_a_json_file(tmp_path):
    assert parse_student_config("tiny") == {
        "model_type": "bert",
        "num_hidden_layers": 2,
        "hidden_size": 128,
        "num_attention_heads": 2,
        "intermediate_size": 512,
    }
    pairs = parse_student_config("layers=3, hidden=96, heads=3, dropout=0.2")
    assert pairs["num_hidden_layers"] == 3 and pairs["intermediate_size"] == 384
    assert pairs["hidden_dropout_prob"] == pairs["attention_probs_dropout_prob"] == 0.2
    path = tmp_path / "student.json"
    path.write_text(json.dumps({"num_hidden_layers": 2, "hidden_size": 64, "num_attention_heads": 4}))
    assert parse_student_config(str(path))["model_type"] == "bert"
    for bad, said in (
        ("layers=2,width=3", "'width=3' is neither a preset"),
        ("layers=two", "layers=two is not a number"),
        ("hidden=100,heads=3", "not a multiple of the 3 attention heads"),
        (str(tmp_path / "missing.json"), "no such file"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_student_config(bad)


def test_a_student_from_config_reads_the_tokenizers_vocabulary_and_the_class_names():
    tokenizer = make_tokenizer()
    model = student_from_config(SPEC, tokenizer, THREE, max_length=700)
    config = model.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (1, 32, 2)
    assert config.vocab_size == len(tokenizer) and config.max_position_embeddings == 700
    assert [config.id2label[i] for i in range(3)] == THREE
    with pytest.raises(ValueError, match="smaller than the tokenizer"):
        student_from_config({"vocab_size": 10, "num_hidden_layers": 1}, tokenizer, THREE)


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--student_num_layers", "1"], "--student_num_layers applies to a pretrained --student checkpoint"),
        (["--use_peft", "true"], "--use_peft applies to a pretrained --student checkpoint"),
        (["--student", "all-MiniLM-L6-v2"], "--student applies to a pretrained --student checkpoint"),
        ([], "--student_config 'layers=1,width=2': 'width=2' is neither a preset"),
    ],
)
def test_checkpoint_flags_and_bad_configs_are_refused_before_any_work(user, tmp_path, capsys, flags, said):  # noqa: F811
    spec = "layers=1,width=2" if not flags else SPEC
    out = tmp_path / "never_written"
    with pytest.raises(SystemExit) as stopped:
        commands.main(
            ["distill", *file_flags(user["paths"]), "--class_names", *THREE, "--teacher", user["teacher"]]
            + ["--student_config", spec, *flags, "--output_dir", str(out), *FAST]
        )
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert said in err and "Traceback" not in err, err
    assert not out.exists()


@pytest.mark.publish
def test_distill_trains_pushes_and_cards_a_student_from_scratch(user, hub, tmp_path, monkeypatch):  # noqa: F811
    monkeypatch.chdir(user["folder"])
    out = tmp_path / "scratch_student"
    commands.main(
        ["distill", *file_flags(user["paths"]), "--class_names", *THREE, "--teacher", user["teacher"]]
        + ["--student_config", SPEC, "--method", "lelp", "--num_subclasses", "2", "--num_train_epochs", "2"]
        + ["--within_class_weight", "0.5"]
        + ["--learning_rate", "3e-3", "--output_dir", str(out), *FAST]
        + ["--push_to_hub", "true", "--hub_model_id", "me/scratch", "--hub_token", "x"]
    )
    config = json.loads((out / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"]) == (1, 32, 2)
    teacher_tokenizer = AutoTokenizer.from_pretrained(user["teacher"])
    assert config["vocab_size"] == len(teacher_tokenizer)
    assert AutoTokenizer.from_pretrained(str(out)).get_vocab() == teacher_tokenizer.get_vocab()
    assert id2label(out) == THREE
    saved = json.loads((out / "results.json").read_text())
    assert saved["train_examples"] == ROWS["train"] and saved["test_examples"] == ROWS["test"]
    assert saved["export_agreement"] == 1.0  # the reloaded export predicts as the trained model did

    pushed = tmp_path / "hub" / "me/scratch"
    card = (pushed / "README.md").read_text()
    front = yaml.safe_load(card.split("---")[1])
    assert "base_model" not in front, front  # no checkpoint it was fine-tuned from
    size = f"{saved['total_parameters'] - _training_only(out):,}"
    assert "**trained from scratch**" in card and "a new 1-layer `bert` encoder" in card, card[:1500]
    assert "λ (weight of the within-class term) = 0.5" in card
    assert f"hidden size 32, 2 attention heads, {size} parameters" in card
    assert "with the tokenizer and vocabulary of `teacher`" in card  # the folder's name, never its path
    assert str(tmp_path) not in card and str(user["folder"]) not in card
    for name in ("model.safetensors", "config.json", "tokenizer.json", "README.md", "lelp_subclass_head.safetensors"):
        assert (pushed / name).is_file(), name

    # A fresh process that cannot import hf_lelp reloads what was pushed and answers with the user's classes.
    texts, truth = user_texts(12, THREE, 5)
    script = (
        "import sys, json; sys.modules['hf_lelp'] = None\n"
        "from transformers import pipeline\n"
        f"clf = pipeline('text-classification', model={str(pushed)!r}, device=-1)\n"
        f"print(json.dumps([a['label'] for a in clf({texts!r}, truncation=True)]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert set(json.loads(done.stdout.strip().splitlines()[-1])) <= set(THREE)


def _training_only(folder) -> int:
    """Parameters of the side files (the subclass head): counted in total_parameters, not in the export."""
    from safetensors.torch import load_file

    side = os.path.join(folder, "lelp_subclass_head.safetensors")
    return sum(t.numel() for t in load_file(side).values()) if os.path.isfile(side) else 0


def test_the_python_api_trains_a_student_from_scratch_from_the_cache_alone(tmp_path):
    """No teacher model anywhere in the training call: the student learns from the cache and the projections."""
    tokenizer = make_tokenizer()
    split = make_split(64)
    cache = tiny_teacher_cache(tmp_path / "cache", tokenizer, split, ["neg", "pos"], max_length=24)
    projections = fit_projections(cache, FitOptions(num_subclasses=2))
    model = student_from_config(SPEC, tokenizer, ["neg", "pos"], max_length=24)
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    attach_subclass_head(model, 2, 2, seed=0)
    trainer = LELPTrainer(
        model=model,
        args=cpu_config(
            tmp_path / "out",
            method="lelp",
            num_subclasses=2,
            per_device_train_batch_size=16,
            num_train_epochs=1,
            learning_rate=1e-3,
        ),
        teacher_cache=cache,
        projections=projections,
        train_dataset=tokenize_split(split, tokenizer, 24),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
    )
    trainer.train()
    assert any(not (model.state_dict()[k] == v).all() for k, v in initial.items())  # it learned
    trainer.save_model(str(tmp_path / "export"))
    card = (tmp_path / "export" / "README.md").read_text()
    assert "**trained from scratch**" in card and "a new 1-layer `bert` encoder" in card, card[:1500]
