"""LELPTrainer: gradient accumulation, float32 loss, eval outputs, checkpoints, export through a pipeline."""

import json
import os

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding, TrainerCallback, pipeline

from conftest import make_split, tiny_bert
from hf_lelp import (
    FitOptions,
    LELPConfig,
    LELPTrainer,
    attach_subclass_head,
    build_compute_metrics,
    build_teacher_cache,
    fit_projections,
    tokenize_split,
)
from hf_lelp.methods.modeling import SUBCLASS_HEAD, SUBCLASS_HEAD_FILE, auxiliary_module

LABELS = ["neg", "pos"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from conftest import make_tokenizer

    tokenizer = make_tokenizer()
    split = make_split(96)
    folder = tmp_path_factory.mktemp("cache")
    cache = build_teacher_cache(
        tiny_bert(2, hidden=48, seed=1),
        tokenizer,
        split,
        str(folder / "cache"),
        label_names=LABELS,
        max_length=24,
        batch_size=32,
    )
    projections = fit_projections(cache, FitOptions(num_subclasses=3))
    return tokenizer, split, cache, projections


def student(num_subclasses=3, seed=2):
    model = tiny_bert(2, hidden=32, seed=seed)
    model.config.id2label, model.config.label2id = dict(enumerate(LABELS)), {n: i for i, n in enumerate(LABELS)}
    if num_subclasses > 1:
        attach_subclass_head(model, 2, num_subclasses, seed=seed)
    return model


def make_trainer(setup, tmp_path, model=None, eval_split=None, **overrides):
    tokenizer, split, cache, projections = setup
    options = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=16,
        num_train_epochs=1,
        report_to="none",
        save_strategy="no",
        use_cpu=True,
        seed=0,
        data_seed=0,
        logging_steps=1,
        num_subclasses=3,
        learning_rate=1e-3,
        disable_tqdm=True,
    )
    options.update(overrides)
    args = LELPConfig(**options)
    return LELPTrainer(
        model=model if model is not None else student(),
        args=args,
        teacher_cache=cache,
        projections=projections,
        train_dataset=tokenize_split(split, tokenizer, 24),
        eval_dataset=tokenize_split(eval_split or split, tokenizer, 24),
        data_collator=DataCollatorWithPadding(tokenizer),
        processing_class=tokenizer,
        compute_metrics=build_compute_metrics(2),
    )


class StopAtStep(TrainerCallback):
    def __init__(self, step):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step:
            control.should_training_stop = True


def weights(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("method", ["lelp", "kd"])
def test_gradient_accumulation_gives_the_same_update(setup, tmp_path, method):
    results = []
    for batch, steps in ((32, 1), (8, 4)):
        trainer = make_trainer(
            setup,
            tmp_path / f"{batch}",
            per_device_train_batch_size=batch,
            gradient_accumulation_steps=steps,
            max_steps=1,
            optim="sgd",
            learning_rate=0.5,
            lr_scheduler_type="constant",
            method=method,
            max_grad_norm=0.0,
        )
        trainer.train()
        results.append(weights(trainer.model))
    changed = [k for k in results[0] if not torch.equal(results[0][k], weights(student())[k])]
    assert changed, "the step changed nothing: the test would pass vacuously"
    for key in results[0]:
        torch.testing.assert_close(results[0][key], results[1][key], atol=2e-6, rtol=1e-4)


def test_loss_is_float32_under_bf16_autocast(setup, tmp_path):
    tokenizer, split, _, _ = setup
    trainer = make_trainer(setup, tmp_path)
    batch = DataCollatorWithPadding(tokenizer)([tokenize_split(split, tokenizer, 24)[i] for i in range(8)])
    trainer.model.train()
    reference = trainer.compute_loss(trainer.model, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = trainer.compute_loss(trainer.model, batch)
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(reference.item(), rel=0.05)


def test_evaluation_sees_class_logits_and_metrics(setup, tmp_path):
    trainer = make_trainer(setup, tmp_path)
    output = trainer.predict(trainer.eval_dataset)
    assert output.predictions.shape == (96, 2)
    assert {"test_accuracy", "test_macro_f1", "test_loss"} <= set(output.metrics)


def test_trainer_refuses_lelp_without_cache_or_projections(setup, tmp_path):
    _, _, cache, _ = setup
    args = LELPConfig(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="needs teacher_cache"):
        LELPTrainer(model=student(), args=args)
    with pytest.raises(ValueError, match="needs projections"):
        LELPTrainer(model=student(), args=args, teacher_cache=cache)


def test_training_learns_and_export_loads_with_plain_transformers(setup, tmp_path):
    tokenizer, split, _, _ = setup
    test_split = make_split(40, seed=3)
    trainer = make_trainer(setup, tmp_path, eval_split=test_split, num_train_epochs=3, learning_rate=3e-3)
    before = trainer.evaluate()["eval_loss"]
    trainer.train()
    metrics = trainer.evaluate()
    assert metrics["eval_loss"] < before
    out = str(tmp_path / "export")
    trainer.save_model(out)
    assert os.path.isfile(os.path.join(out, SUBCLASS_HEAD_FILE))
    reloaded = AutoModelForSequenceClassification.from_pretrained(out)
    assert auxiliary_module(reloaded, SUBCLASS_HEAD) is None
    assert reloaded.config.id2label == {0: "neg", 1: "pos"}
    predictions = trainer.predict(trainer.eval_dataset).predictions.argmax(axis=-1)
    classifier = pipeline("text-classification", model=out, device=-1)
    answers = classifier(list(test_split["text"]))
    exported = np.array([LABELS.index(a["label"]) for a in answers])
    assert (exported == predictions).all()


def test_resume_from_checkpoint_restores_the_subclass_head_and_ends_identically(setup, tmp_path):
    common = dict(
        num_train_epochs=2,
        save_strategy="steps",
        save_steps=6,
        per_device_train_batch_size=16,
        dataloader_num_workers=0,
    )
    full = make_trainer(setup, tmp_path / "full", **common)
    full.train()
    interrupted = make_trainer(setup, tmp_path / "part", **common)
    interrupted.add_callback(StopAtStep(6))  # a crash right after the step-6 checkpoint, same LR schedule
    interrupted.train()
    assert interrupted.state.global_step == 6
    checkpoint = tmp_path / "part" / "out" / "checkpoint-6"
    assert (checkpoint / SUBCLASS_HEAD_FILE).is_file()
    resumed = make_trainer(setup, tmp_path / "part", model=student(seed=11), **common)
    resumed.train(resume_from_checkpoint=str(checkpoint))
    for key, value in weights(full.model).items():
        torch.testing.assert_close(weights(resumed.model)[key], value, atol=1e-5, rtol=1e-4)


def test_lelp_config_drops_into_a_script_that_builds_training_arguments(tmp_path):
    from transformers import TrainingArguments

    existing = TrainingArguments(
        output_dir=str(tmp_path),
        learning_rate=3e-4,
        num_train_epochs=2,
        gradient_accumulation_steps=4,
        report_to="none",
        use_cpu=True,
    )
    args = LELPConfig(**existing.to_dict(), method="lelp", num_subclasses=4)
    assert (args.learning_rate, args.gradient_accumulation_steps, args.num_subclasses) == (3e-4, 4, 4)
    with pytest.raises(ValueError, match="--method must be one of"):
        LELPConfig(**existing.to_dict(), method="lelpp")


def test_the_rotation_of_older_transformers_keeps_what_rotate_checkpoints_keeps(tmp_path):
    from transformers.trainer_utils import rotate_checkpoints

    from hf_lelp.training.callbacks import rotate_by_step

    kept = []
    for rotate in (rotate_checkpoints, rotate_by_step):
        out = tmp_path / rotate.__name__
        for step in (2, 4, 6, 8, 10):
            (out / f"checkpoint-{step}").mkdir(parents=True)
        rotate(output_dir=str(out), save_total_limit=2, best_model_checkpoint=str(out / "checkpoint-4"))
        kept.append(sorted(p.name for p in out.iterdir()))
    assert kept[1] == kept[0] == ["checkpoint-10", "checkpoint-4"]


def test_a_checkpoint_save_that_fails_midway_gives_the_user_their_limit_back(setup, tmp_path, monkeypatch):
    trainer = make_trainer(setup, tmp_path, save_strategy="steps", save_steps=2, save_total_limit=1)
    stale = tmp_path / "out" / "checkpoint-2"
    stale.mkdir(parents=True)
    (stale / "adapter_model.safetensors").write_text("an earlier run's")
    seen = []

    def fail_after_the_model(output_dir):  # the Trainer's next write after save_model
        seen.append((trainer.args.save_total_limit, sorted(os.listdir(output_dir))))
        raise OSError("disk full")

    monkeypatch.setattr(trainer, "_save_optimizer_and_scheduler", fail_after_the_model)
    with pytest.raises(OSError, match="disk full"):
        trainer.train()
    # While it was written the rotation was held and the earlier run's folder gone; afterwards the limit is back.
    assert seen[0][0] is None and "adapter_model.safetensors" not in seen[0][1] and "model.safetensors" in seen[0][1]
    assert trainer.args.save_total_limit == 1 and trainer.checkpoint_finisher.held is None
    assert json.loads((stale / "training_args.json").read_text())["save_total_limit"] == 1
