"""The teacher cache knows what it holds: the rows it was built on (issue 19 item 3), shards of one row range each
(issue 20 item 4), the tokenizer (item 6), no temporaries left by a killed merge (item 9), and a meta.json that lists
exactly the format's files (item 10)."""

import json
import logging
import os
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
from transformers import AutoTokenizer, BertTokenizerFast, DataCollatorWithPadding

from conftest import ROOT, VOCAB, make_split, make_texts, make_tokenizer, tiny_bert
from hf_lelp import LELPConfig, LELPTrainer
from hf_lelp.cache import teacher_pass
from hf_lelp.cache.store import CacheMismatchError, CorruptCacheError, TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache
from hf_lelp.cache.writer import write_cache
from hf_lelp.data.load import load_text_classification
from hf_lelp.data.tokens import tokenize_split

NAMES = ["class_0", "class_1"]  # tiny_bert's own class names


def build(split, path, tokenizer=None, **kwargs):
    options = dict(label_names=NAMES, max_length=24, batch_size=16, shard_size=16, teacher_name="tiny")
    options.update(kwargs)
    return build_teacher_cache(tiny_bert(2), tokenizer or make_tokenizer(), split, str(path), **options)


def kd_trainer(tmp_path, cache, train_dataset, **overrides):
    tokenizer = make_tokenizer()
    options = dict(output_dir=str(tmp_path / "out"), method="kd", report_to="none", use_cpu=True, max_steps=1)
    args = LELPConfig(**options, save_strategy="no", disable_tqdm=True, **overrides)
    return LELPTrainer(
        model=tiny_bert(2, seed=2),
        args=args,
        teacher_cache=cache,
        train_dataset=train_dataset,
        data_collator=DataCollatorWithPadding(tokenizer),
    )


def write_csv(path, frame) -> str:
    frame.to_csv(path, index=False)
    return str(path)


# --- Issue 19 item 3: a reopened cache is checked against the training data.


@pytest.mark.bad_input
def test_a_reopened_cache_refuses_a_shuffled_copy_of_its_training_data(tmp_path, caplog):
    texts, labels, _ = make_texts(60)
    frame = pd.DataFrame({"review": texts, "sentiment": [NAMES[y] for y in labels]})
    original = write_csv(tmp_path / "train.csv", frame)
    shuffled = write_csv(tmp_path / "shuffled.csv", frame.sample(frac=1.0, random_state=3))
    options = dict(text_column="review", label_column="sentiment")
    build(load_text_classification(original, **options).splits["train"], tmp_path / "cache")

    cache = TeacherCache.open(str(tmp_path / "cache"))  # as the README does in a later session
    tokenizer = make_tokenizer()
    same = tokenize_split(load_text_classification(original, **options).splits["train"], tokenizer, 24)
    # The data the cache was built on: accepted, and text_hash never reaches the model (kept columns included).
    kd_trainer(tmp_path, cache, same, remove_unused_columns=False).train()

    reordered = tokenize_split(load_text_classification(shuffled, **options).splits["train"], tokenizer, 24)
    with pytest.raises(CacheMismatchError, match=r"example ids name other rows, first ids \[\d+") as info:
        kd_trainer(tmp_path, cache, reordered)
    assert "the text differs at ids" in str(info.value) and str(tmp_path / "cache") in str(info.value)

    # Tokenised by other means (no text_hash column): the labels are still compared, and the gap is said.
    with caplog.at_level(logging.WARNING, logger="hf_lelp"), pytest.raises(CacheMismatchError, match="label differs"):
        kd_trainer(tmp_path, cache, reordered.remove_columns("text_hash"))
    assert "has no 'text' or 'text_hash' column" in caplog.text


@pytest.mark.bad_input
def test_a_cache_refuses_edited_texts_under_the_same_ids_and_labels(tmp_path):
    split = make_split(40)
    cache = build(split, tmp_path / "cache")
    edited = split.map(lambda row: {"text": row["text"] + " movie" if row["example_id"] == 7 else row["text"]})
    with pytest.raises(CacheMismatchError, match=r"1 of 40 example ids name other rows, first ids \[7\]"):
        kd_trainer(tmp_path, cache, tokenize_split(edited, make_tokenizer(), 24))
    with pytest.raises(CacheMismatchError, match=r"1 of 40 .*first ids \[7\] \(the text differs at ids \[7\]\)"):
        cache.check_rows(edited.shuffle(seed=0), chunk_size=3)  # raw rows, in any order, read a chunk at a time


@pytest.mark.bad_input
def test_a_cache_of_the_older_format_is_read_and_its_unchecked_texts_are_said(tmp_path, caplog):
    split = make_split(40)
    folder = tmp_path / "cache"
    build(split, folder)
    # What hf-lelp wrote before text_hashes.npy (format 1): the same files less that one.
    meta = json.loads((folder / "meta.json").read_text())
    meta["format"] = "hf_lelp.teacher_cache/1"
    del meta["sha256"]["text_hashes.npy"], meta["texts_recorded"]
    os.remove(folder / "text_hashes.npy")
    (folder / "meta.json").write_text(json.dumps(meta))
    cache = TeacherCache.open(str(folder))
    assert cache.text_hashes is None and not cache.records_texts
    with caplog.at_level(logging.WARNING, logger="hf_lelp"):
        kd_trainer(tmp_path, cache, tokenize_split(split, make_tokenizer(), 24))
    assert "the cache records no texts (written by an older hf-lelp" in caplog.text
    flipped = split.map(lambda row: {"label": 1 - row["label"] if row["example_id"] == 5 else row["label"]})
    with pytest.raises(CacheMismatchError, match=r"the label differs at ids \[5\]"):
        kd_trainer(tmp_path, cache, tokenize_split(flipped, make_tokenizer(), 24))


# --- Issue 20 item 4: shards record their row range; a finished cache holds each id exactly once.


def kill_teacher_pass_before_the_merge(monkeypatch):
    """Stop the teacher pass (as if killed) once every shard is written: the shards stay on disk, unmerged."""

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the merge")

    monkeypatch.setattr(teacher_pass, "merge_shards", killed)


@pytest.mark.fault
def test_resuming_with_another_shard_size_recomputes_shards_of_other_rows(tmp_path, monkeypatch):
    split = make_split(64)
    reference = build(split, tmp_path / "reference", shard_size=4)  # the same batches as the resumed run
    kill_teacher_pass_before_the_merge(monkeypatch)  # shards 0-6 of 10 rows: the last one holds rows 60-63
    with pytest.raises(KeyboardInterrupt):
        build(split, tmp_path / "cache", shard_size=10)
    monkeypatch.undo()
    resumed = build(split, tmp_path / "cache", shard_size=4)  # shard 6 is now rows 24-27, not the old 60-63
    assert np.array_equal(resumed.example_ids, np.arange(64))
    for name in ("hidden", "logits", "labels", "text_hashes"):
        assert np.array_equal(getattr(resumed, name), getattr(reference, name)), name


@pytest.mark.fault
def test_a_merge_refuses_ids_that_are_not_each_there_once(tmp_path):
    hidden = torch.randn(4, 8)
    weight, bias = torch.randn(2, 8), torch.zeros(2)
    fingerprint = {"teacher": "t", "dataset": "d", "max_length": 8, "label_names": NAMES, "dtype": "float32"}
    with pytest.raises(CorruptCacheError, match=r"exactly once \(ids twice: \[1\]"):
        write_cache(
            str(tmp_path / "c"), hidden, hidden @ weight.T, torch.zeros(4), weight, bias, fingerprint,
            example_ids=torch.tensor([0, 1, 1, 3]),
        )  # fmt: skip
    assert not (tmp_path / "c" / "meta.json").exists()


# --- Issue 20 item 6: the tokenizer is part of the cache's identity.


@pytest.mark.fault
def test_a_teacher_with_another_vocabulary_does_not_reuse_the_cache(tmp_path):
    split = make_split(40)
    build(split, tmp_path / "cache")
    make_tokenizer().save_pretrained(tmp_path / "tokenizer")
    reloaded = AutoTokenizer.from_pretrained(tmp_path / "tokenizer")
    reloaded(["a text"], truncation=True, max_length=3)  # a call leaves truncation state in the tokenizer
    build(split, tmp_path / "cache", tokenizer=reloaded)  # the same tokenizer from elsewhere: reused
    shuffled_vocab = {word: i for i, word in enumerate(VOCAB[:5] + VOCAB[5:][::-1])}
    other = BertTokenizerFast(vocab=shuffled_vocab, do_lower_case=True)
    with pytest.raises(CacheMismatchError, match=r"tokenizer_sha256: teacher cache has '\w+', this run has '\w+'"):
        build(split, tmp_path / "cache", tokenizer=other)
    with pytest.raises(CacheMismatchError, match="max_length: teacher cache has 24, this run has 16"):
        build(split, tmp_path / "cache", max_length=16)


# --- Issue 20 item 9: a merge killed by SIGKILL leaves temporaries that the next run removes.

KILLED_PASS = """
import os, signal, sys
sys.path.insert(0, os.path.join({root!r}, "tests"))
import hf_lelp.cache.writer as cache_module
from conftest import make_split, make_tokenizer, tiny_bert
from hf_lelp.cache.teacher_pass import build_teacher_cache

where, real = sys.argv[2], {{"load_file": cache_module.load_file, "rmtree": cache_module.shutil.rmtree}}
loads = []

def load_file(path, *args, **kwargs):  # the merge loads shard 0 (shapes), then every shard in turn
    loads.append(path)
    if where == "merge" and len(loads) == 3:  # temporary arrays reserved, one shard copied
        os.kill(os.getpid(), signal.SIGKILL)
    return real["load_file"](path, *args, **kwargs)

def rmtree(path, *args, **kwargs):  # the merge's last step: meta.json is written, the shards go
    if where == "shards" and os.path.basename(path) == "shards":
        os.kill(os.getpid(), signal.SIGKILL)
    return real["rmtree"](path, *args, **kwargs)

cache_module.load_file = load_file
cache_module.shutil.rmtree = rmtree
build_teacher_cache(
    tiny_bert(2), make_tokenizer(), make_split(40), sys.argv[1], label_names=["class_0", "class_1"], max_length=24,
    batch_size=16, shard_size=16, teacher_name="tiny",
)
"""


def temporaries(folder) -> list[str]:
    return sorted(name for name in os.listdir(folder) if name.startswith(".tmp-"))


@pytest.mark.fault
@pytest.mark.parametrize("where", ["merge", "shards"])
def test_a_merge_killed_by_sigkill_leaves_nothing_behind_after_the_rerun(tmp_path, where):
    folder = tmp_path / "cache"
    script = KILLED_PASS.format(root=ROOT)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", script, str(folder), where], cwd=ROOT, env=env, capture_output=True)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    if where == "merge":
        assert {name.split("-")[1] for name in temporaries(folder)} >= {"hidden", "example_ids"}
        assert not (folder / "meta.json").exists()
    else:
        assert (folder / "meta.json").exists() and (folder / "shards").is_dir()
    cache = build(make_split(40), folder)
    assert temporaries(folder) == [] and not (folder / "shards").exists()
    assert sorted(os.listdir(folder)) == sorted([*cache.meta["sha256"], "meta.json"])
    assert np.array_equal(cache.example_ids, np.arange(40))


# --- Issue 20 item 10: meta.json must list exactly the format's files, inside the folder.


def edit_meta(folder, edit) -> None:
    meta = json.loads((folder / "meta.json").read_text())
    edit(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.fault
def test_a_meta_json_without_an_entry_does_not_leave_that_file_unverified(tmp_path):
    folder = tmp_path / "cache"
    build(make_split(40), folder)
    data = bytearray((folder / "hidden.npy").read_bytes())
    data[-3] ^= 0xFF
    (folder / "hidden.npy").write_bytes(bytes(data))
    edit_meta(folder, lambda meta: meta["sha256"].pop("hidden.npy"))
    with pytest.raises(CorruptCacheError, match=r"does not list the files of a .* cache: missing \['hidden.npy'\]"):
        TeacherCache.open(str(folder))


@pytest.mark.fault
@pytest.mark.parametrize("outside", ["../outside.bin", "ABSOLUTE"])
def test_a_meta_json_entry_outside_the_cache_folder_is_refused(tmp_path, outside):
    import hashlib

    folder = tmp_path / "cache"
    build(make_split(40), folder)
    (tmp_path / "outside.bin").write_bytes(b"a file that is not the cache's")
    name = str(tmp_path / "outside.bin") if outside == "ABSOLUTE" else outside
    checksum = hashlib.sha256((tmp_path / "outside.bin").read_bytes()).hexdigest()
    edit_meta(folder, lambda meta: meta["sha256"].update({name: checksum}))
    with pytest.raises(CorruptCacheError, match=r"not part of the format \[.*outside.bin'\]"):
        TeacherCache.open(str(folder))
    with pytest.raises(CorruptCacheError, match="not part of the format"):  # also where checksums are not read
        TeacherCache.open(str(folder), verify=False)
