"""Faults and bad input: disk full, kills between checkpoints, incomplete checkpoints, odd texts, mixed tokenizers."""

import errno
import json
import logging
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import load_file
from transformers import BertTokenizerFast, DataCollatorWithPadding

import hf_lelp.cache.writer as cache_module
import hf_lelp.methods.projections as projections_module
from conftest import ROOT, VOCAB, make_split, make_tokenizer, run, synthetic_cache, tiny_bert
from hf_lelp import FitOptions, LELPConfig, LELPTrainer, attach_subclass_head, build_teacher_cache, fit_projections
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.methods.projections import SubclassProjections
from hf_lelp.training.resume import CHECKPOINT_MARKER, last_complete_checkpoint


def disk_full_after(real, calls_before_failure: int):
    calls = []

    def write(tensors, path, *args, **kwargs):
        calls.append(path)
        if len(calls) > calls_before_failure:
            with open(path, "wb") as handle:  # a partial write, then the device is full
                handle.write(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(tensors, path, *args, **kwargs)

    return write


@pytest.mark.fault
def test_disk_full_while_saving_projections_keeps_the_previous_file(tmp_path, monkeypatch):
    cache = synthetic_cache(tmp_path / "cache", n=200, d=12, c=2)
    path = str(tmp_path / "projections.safetensors")
    first = fit_projections(cache, FitOptions(num_subclasses=2))
    first.save(path)
    monkeypatch.setattr(projections_module, "save_file", disk_full_after(projections_module.save_file, 0))
    with pytest.raises(OSError, match="No space left on device while writing .*previous complete file is intact"):
        fit_projections(cache, FitOptions(num_subclasses=2, seed=5)).save(path)
    torch.testing.assert_close(SubclassProjections.load(path).components, first.components)
    assert [f for f in os.listdir(tmp_path) if f.startswith(".tmp-")] == []


@pytest.mark.fault
def test_disk_full_during_the_teacher_pass_then_resume(tmp_path, monkeypatch):
    tokenizer, split, teacher = make_tokenizer(), make_split(200), tiny_bert(2)
    options = dict(label_names=["a", "b"], max_length=24, batch_size=32, shard_size=64)
    reference = build_teacher_cache(teacher, tokenizer, split, str(tmp_path / "reference"), **options)
    monkeypatch.setattr(cache_module, "save_file", disk_full_after(cache_module.save_file, 2))
    with pytest.raises(OSError, match="No space left on device while writing .*shard-00002"):
        build_teacher_cache(teacher, tokenizer, split, str(tmp_path / "cache"), **options)
    monkeypatch.undo()
    resumed = build_teacher_cache(teacher, tokenizer, split, str(tmp_path / "cache"), **options)
    assert np.array_equal(resumed.hidden, reference.hidden)


def train_tiny(tmp_path, cache, projections, tokenizer, split, **overrides):
    model = tiny_bert(2, hidden=32, seed=2)
    attach_subclass_head(model, 2, 2)
    options = dict(
        output_dir=str(tmp_path),
        num_train_epochs=2,
        per_device_train_batch_size=16,
        report_to="none",
        use_cpu=True,
        save_strategy="steps",
        save_steps=2,
        num_subclasses=2,
        disable_tqdm=True,
    )
    options.update(overrides)
    return LELPTrainer(
        model=model,
        args=LELPConfig(**options),
        teacher_cache=cache,
        projections=projections,
        train_dataset=tokenize_split(split, tokenizer, 24),
        data_collator=DataCollatorWithPadding(tokenizer),
    )


@pytest.mark.fault
def test_incomplete_checkpoints_are_skipped_or_refused(tmp_path):
    tokenizer, split = make_tokenizer(), make_split(64)
    cache = build_teacher_cache(
        tiny_bert(2), tokenizer, split, str(tmp_path / "cache"), label_names=["a", "b"], max_length=24
    )
    projections = fit_projections(cache, FitOptions(num_subclasses=2))
    train_tiny(tmp_path / "out", cache, projections, tokenizer, split).train()
    assert (tmp_path / "out" / "checkpoint-8" / CHECKPOINT_MARKER).is_file()
    os.remove(tmp_path / "out" / "checkpoint-8" / CHECKPOINT_MARKER)  # as if killed while writing it
    assert last_complete_checkpoint(str(tmp_path / "out")).endswith("checkpoint-6")
    with pytest.raises(ValueError, match="checkpoint-8 is incomplete"):
        train_tiny(tmp_path / "out", cache, projections, tokenizer, split).train(
            resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-8")
        )


@pytest.mark.fault
@pytest.mark.slow
def test_training_killed_between_checkpoints_resumes_to_the_same_result(project, tmp_path):
    common = [
        str(project / "distill.yaml"),
        "--num_train_epochs",
        "3",
        "--save_strategy",
        "steps",
        "--save_steps",
        "3",
        "--cache_dir",
        str(project / "cache"),
    ]
    run([sys.executable, "recipes/distill.py", *common, "--output_dir", str(tmp_path / "full")])
    target = tmp_path / "killed"
    process = subprocess.Popen(
        [sys.executable, "recipes/distill.py", *common, "--output_dir", str(target)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    deadline = time.time() + 300
    while time.time() < deadline and not (target / "checkpoint-9" / CHECKPOINT_MARKER).exists():
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (target / "results.json").exists(), "the run finished before it was killed"
    run(
        [
            sys.executable,
            "recipes/distill.py",
            *common,
            "--output_dir",
            str(target),
            "--resume_from_checkpoint",
            "true",
        ]
    )
    full, resumed = (json.loads((d / "results.json").read_text()) for d in (tmp_path / "full", target))
    assert resumed["test_accuracy"] == full["test_accuracy"]
    a, b = load_file(str(tmp_path / "full" / "model.safetensors")), load_file(str(target / "model.safetensors"))
    resumed_from = load_file(str(target / "checkpoint-9" / "model.safetensors"))  # the earliest it may resume from
    # Resuming on CPU is exact in data order, RNG, optimizer and scheduler state, but not bit-exact in float32:
    # MKL/oneDNN kernels choose code paths by buffer alignment and thread split, and reloaded weights and Adam
    # moments live in new buffers, so the weights differ at float32 rounding level (about 1e-6 here, depending on
    # the thread count and on which checkpoint the kill leaves). 1e-5 bounds that rounding, and the resumed steps
    # must have moved the weights 100x further than it, so a resume that trained nothing fails.
    moved = max(float((a[key] - resumed_from[key]).abs().max()) for key in a)
    assert moved > 1e-3, moved
    for key in a:
        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=0)


@pytest.mark.bad_input
def test_odd_texts_are_handled_and_reported(tmp_path, caplog):
    frame = pd.DataFrame({"text": ["good film", "", "   ", "bad " * 400, "fine"], "label": [1, 0, 0, 0, 1]})
    frame.to_csv(tmp_path / "data.csv", index=False)
    with caplog.at_level(logging.WARNING, logger="hf_lelp"):
        data = load_text_classification(str(tmp_path / "data.csv"))
        tokenized = tokenize_split(data.splits["train"], make_tokenizer(), 16)
    assert "2 empty or whitespace-only texts" in caplog.text
    assert "1 of 5 texts reach max_length=16" in caplog.text
    assert max(len(ids) for ids in tokenized["input_ids"]) == 16


@pytest.mark.bad_input
def test_non_utf8_file_gets_a_clear_error_and_works_with_its_encoding(tmp_path):
    (tmp_path / "latin.csv").write_bytes("text,label\ncaf\xe9 cr\xe8me,1\nbad,0\n".encode("latin-1"))
    with pytest.raises(ValueError, match="not valid utf-8.*--encoding"):
        load_text_classification(str(tmp_path / "latin.csv"))
    data = load_text_classification(str(tmp_path / "latin.csv"), encoding="latin-1")
    assert data.splits["train"]["text"][0] == "café crème"


@pytest.mark.bad_input
def test_student_with_a_different_tokenizer_trains_from_the_teacher_cache(tmp_path):
    split = make_split(64)
    cache = build_teacher_cache(
        tiny_bert(2), make_tokenizer(), split, str(tmp_path / "cache"), label_names=["a", "b"], max_length=24
    )
    reversed_vocab = {word: i for i, word in enumerate(VOCAB[:5] + VOCAB[5:][::-1])}  # other ids for every word
    student_tokenizer = BertTokenizerFast(vocab=reversed_vocab, do_lower_case=True)
    assert student_tokenizer("great")["input_ids"] != make_tokenizer()("great")["input_ids"]
    trainer = train_tiny(
        tmp_path / "out",
        cache,
        fit_projections(cache, FitOptions(num_subclasses=2)),
        student_tokenizer,
        split,
        save_strategy="no",
    )
    loss = trainer.train().training_loss
    assert np.isfinite(loss)


@pytest.mark.bad_input
def test_unlabelled_transfer_set_refuses_label_dependent_options(tmp_path):
    from hf_lelp.training.job_data import check_labels_for_method

    frame = pd.DataFrame({"text": ["a good one", "a bad one"]})
    frame.to_csv(tmp_path / "raw.csv", index=False)
    data = load_text_classification(
        "raw", label_column=None, label_names=["neg", "pos"], data_files={"train": str(tmp_path / "raw.csv")}
    )
    base = dict(output_dir=str(tmp_path), report_to="none", use_cpu=True)
    with pytest.raises(ValueError, match="--hard_label_weight > 0 needs labels"):
        check_labels_for_method(data, LELPConfig(**base, hard_label_weight=0.5, grouping="prediction"))
    with pytest.raises(ValueError, match="--grouping prediction"):
        check_labels_for_method(data, LELPConfig(**base))
    with pytest.raises(ValueError, match="--method ce trains on labels"):
        check_labels_for_method(data, LELPConfig(**base, method="ce"))
    check_labels_for_method(data, LELPConfig(**base, grouping="prediction"))  # LELP as in the paper: fine


@pytest.mark.bad_input
def test_cache_refuses_teacher_with_other_classes(tmp_path):
    from hf_lelp.data.label_order import check_teacher_labels

    teacher = tiny_bert(2)
    teacher.config.id2label = {0: "pos", 1: "neg"}
    with pytest.raises(ValueError, match=r"teacher's classes \['pos', 'neg'\] .* do not match the data's classes"):
        check_teacher_labels(teacher.config, ["bad", "good"])
    # The same classes in another order are matched by name (issue 19): the data follows the teacher's order.
    assert check_teacher_labels(teacher.config, ["neg", "pos"]).names == ["pos", "neg"]
    generic = tiny_bert(2).config
    generic.id2label = {0: "LABEL_0", 1: "LABEL_1"}
    check_teacher_labels(generic, ["neg", "pos"])  # unnamed classes: nothing to compare, accepted


@pytest.mark.bad_input
def test_class_present_in_eval_but_absent_from_train_is_reported_and_refused_by_the_fit(tmp_path, caplog):
    from hf_lelp.training.arguments import DataArguments
    from hf_lelp.training.job_data import load_data

    pd.DataFrame({"text": ["good", "fine", "great"], "label": ["pos", "pos", "pos"]}).to_csv(tmp_path / "train.csv")
    pd.DataFrame({"text": ["bad", "good"], "label": ["neg", "pos"]}).to_csv(tmp_path / "test.csv")
    args = DataArguments(train_file=str(tmp_path / "train.csv"), test_file=str(tmp_path / "test.csv"))
    with caplog.at_level(logging.WARNING, logger="hf_lelp"):
        data = load_data(args)
    assert "Split 'test' has classes absent from train: ['neg']" in caplog.text
    assert data.label_names == ["neg", "pos"]
    # The fit refuses a class with no examples, naming it (here class_0 is dropped from the transfer set).
    without_class_0 = _drop_class(tmp_path, synthetic_cache(tmp_path / "cache", n=20, d=8, c=2))
    with pytest.raises(ValueError, match=r"fewer than S \+ 1 = 3 examples.*'class_0': 0"):
        fit_projections(without_class_0, FitOptions(num_subclasses=2))


def _drop_class(tmp_path, cache):
    """A copy of `cache` whose class-0 rows are gone: class 0 has no examples at all."""
    from hf_lelp.cache.writer import write_cache

    keep = np.asarray(cache.labels) == 1
    hidden = torch.from_numpy(np.asarray(cache.hidden)[keep])
    logits = torch.from_numpy(np.asarray(cache.logits)[keep])
    fingerprint = dict(cache.fingerprint)
    return write_cache(
        str(tmp_path / "dropped"),
        hidden,
        logits,
        torch.ones(int(keep.sum()), dtype=torch.long),
        cache.weight,
        cache.bias,
        fingerprint,
    )
