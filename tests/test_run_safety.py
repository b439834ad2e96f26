"""Stale or wrong state: another run's checkpoint, a folder in use, another method's leftovers, silent configs."""

import os
import sys
import time

import pytest
from transformers import DataCollatorWithPadding

from conftest import ROOT, hold, make_split, make_tokenizer, tiny_bert
from hf_lelp import LELPConfig, LELPTrainer, build_teacher_cache
from hf_lelp.base.locks import FolderInUseError
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.training.resume import CHECKPOINT_MARKER

sys.path.insert(0, os.path.join(ROOT, "recipes"))
import distill  # noqa: E402

pytestmark = pytest.mark.slow


def distil(project, out, *flags):
    return distill.main([str(project / "distill.yaml"), "--output_dir", str(out), *flags])


@pytest.mark.fault
def test_resume_refuses_a_checkpoint_of_another_configuration(project, tmp_path):
    out = tmp_path / "run"
    distil(project, out, "--save_strategy", "epoch", "--num_train_epochs", "2")
    assert (out / "checkpoint-16" / CHECKPOINT_MARKER).is_file()
    with pytest.raises(ValueError, match=r"belongs to another run configuration.*learning_rate: checkpoint 0.001"):
        distil(project, out, "--resume_from_checkpoint", "true", "--learning_rate", "5e-4", "--num_train_epochs", "2")
    with pytest.raises(ValueError, match=r"num_subclasses: checkpoint 2, this run 3"):
        distil(project, out, "--resume_from_checkpoint", str(out / "checkpoint-8"), "--num_subclasses", "3")
    # The same configuration resumes (here: to train one epoch longer).
    results = distil(
        project, out, "--resume_from_checkpoint", "true", "--num_train_epochs", "3", "--save_strategy", "epoch"
    )
    assert results["test_accuracy"] is not None and (out / "checkpoint-24").is_dir()


@pytest.mark.fault
def test_a_second_run_on_a_folder_in_use_is_refused_naming_the_holder(project, tmp_path):
    for folder, flags in (
        (tmp_path / "out", ()),
        (tmp_path / "new_cache", ("--cache_dir", str(tmp_path / "new_cache"))),
    ):
        holder = hold(folder)
        try:
            started = time.time()
            with pytest.raises(FolderInUseError, match=rf"in use by another hf-lelp run .*\"pid\": {holder.pid}"):
                distil(project, tmp_path / "out", *flags)
            assert time.time() - started < 60
        finally:
            holder.kill()
            holder.wait()
    assert not (tmp_path / "new_cache" / "shards").exists()  # the refused run wrote nothing there
    distil(project, tmp_path / "out")  # once the holder is gone (even killed), the folder is free again


@pytest.mark.fault
def test_another_methods_folder_is_refused_and_stale_side_files_are_removed(project, tmp_path):
    out = tmp_path / "lelp"
    distil(project, out)
    assert (out / "lelp_subclass_head.safetensors").is_file()
    with pytest.raises(ValueError, match=r"holds a finished --method lelp student; a --method kd run there"):
        distil(project, out, "--method", "kd")
    # Saving a KD model over a folder with an old subclass head removes the head: it is not this model's.
    tokenizer, split = make_tokenizer(), make_split(32)
    cache = build_teacher_cache(tiny_bert(2), tokenizer, split, str(tmp_path / "cache"), label_names=["a", "b"])
    trainer = LELPTrainer(
        model=tiny_bert(2, seed=3),
        args=LELPConfig(output_dir=str(out), method="kd", report_to="none", use_cpu=True, save_strategy="no"),
        teacher_cache=cache,
        train_dataset=tokenize_split(split, tokenizer, 24),
        data_collator=DataCollatorWithPadding(tokenizer),
    )
    trainer.save_model(str(out))
    assert not (out / "lelp_subclass_head.safetensors").exists()


@pytest.mark.bad_input
def test_silent_configurations_are_refused(project, tmp_path):
    with pytest.raises(ValueError, match=r"--eval_split 'tset' is not a split .*\['test', 'train'\]"):
        distil(project, tmp_path / "a", "--eval_split", "tset")
    assert not (tmp_path / "a" / "results.json").exists()
    with pytest.raises(ValueError, match=r"--per_device_train_batch_size .* must be >= 1"):
        distil(project, tmp_path / "b", "--per_device_train_batch_size", "0")
    for method in ("kmeans", "lelp", "random"):
        with pytest.raises(ValueError, match=r"--num_subclasses \(S\) must be >= 1"):
            distil(project, tmp_path / "c", "--method", method, "--num_subclasses", "0")
    # An explicit '' trains without a final evaluation (asked for, so not silent).
    results = distil(project, tmp_path / "d", "--eval_split", "")
    assert not any(key.startswith("test_") for key in results)
