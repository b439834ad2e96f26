"""The teacher pass: the W·h + b invariant for several head styles, fingerprints, resume, corruption, bad input."""

import os

import numpy as np
import pytest
import torch
from transformers import MPNetConfig, MPNetForSequenceClassification, RobertaConfig, RobertaForSequenceClassification

from conftest import VOCAB, make_split, tiny_bert
from hf_lelp.cache import teacher_pass
from hf_lelp.cache.fingerprint import sha256_state_dict
from hf_lelp.cache.store import CacheMismatchError, CorruptCacheError, TeacherCache
from hf_lelp.cache.teacher_pass import build_teacher_cache


def tiny_model(config_class, model_class, num_labels=2):
    """A one-layer model of another head style (RoBERTa/MPNet: dense + tanh + out_proj)."""
    torch.manual_seed(0)
    config = config_class(
        vocab_size=len(VOCAB),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=80,
        pad_token_id=0,
        num_labels=num_labels,
    )
    return model_class(config).eval()


def build(teacher, tokenizer, split, path, **kwargs):
    options = dict(label_names=["a", "b"], max_length=32, batch_size=16, shard_size=64, teacher_name="tiny")
    options.update(kwargs)
    return build_teacher_cache(teacher, tokenizer, split, str(path), **options)


@pytest.mark.parametrize(
    "make_teacher,head_name",
    [
        (lambda: tiny_bert(2), "classifier"),
        (lambda: tiny_model(RobertaConfig, RobertaForSequenceClassification), "classifier.out_proj"),
        (lambda: tiny_model(MPNetConfig, MPNetForSequenceClassification), "classifier.out_proj"),
    ],
)
def test_cached_hidden_reproduces_teacher_logits(tokenizer, tmp_path, make_teacher, head_name):
    split = make_split(150)
    teacher = make_teacher()
    cache = build(teacher, tokenizer, split, tmp_path / "cache")
    assert cache.meta["head_module"] == head_name
    hidden, logits = cache.lookup(np.arange(150))
    torch.testing.assert_close(hidden @ cache.weight.T + cache.bias, logits, atol=1e-5, rtol=1e-5)
    # ... and the cached logits are the teacher's own, in example-id order.
    encoded = tokenizer(list(split["text"][:5]), truncation=True, max_length=32, padding=True, return_tensors="pt")
    with torch.no_grad():
        torch.testing.assert_close(teacher(**encoded).logits, logits[:5], atol=1e-5, rtol=1e-5)
    assert np.array_equal(cache.example_ids, np.arange(150))
    assert np.array_equal(cache.labels, np.array(split["label"]))


def test_cache_is_memory_mapped_and_checksummed(tokenizer, tmp_path):
    cache = build(tiny_bert(2), tokenizer, make_split(100), tmp_path / "cache")
    assert isinstance(cache.hidden, np.memmap)
    assert set(cache.meta["sha256"]) == {
        "example_ids.npy",
        "hidden.npy",
        "logits.npy",
        "labels.npy",
        "text_hashes.npy",
        "head.safetensors",
    }
    assert not os.path.exists(tmp_path / "cache" / "shards")


@pytest.mark.fault
def test_existing_cache_is_reused_and_a_mismatch_is_refused_naming_both_sides(tokenizer, tmp_path):
    split, teacher = make_split(100), tiny_bert(2)
    first = build(teacher, tokenizer, split, tmp_path / "cache")
    again = build(teacher, tokenizer, split, tmp_path / "cache")
    assert again.meta == first.meta
    with pytest.raises(CacheMismatchError, match="teacher_head_sha256: teacher cache has '.*', this run has '.*'"):
        build(tiny_bert(2, seed=5), tokenizer, split, tmp_path / "cache")
    with pytest.raises(CacheMismatchError, match="dataset_sha256"):
        build(teacher, tokenizer, make_split(100, seed=9), tmp_path / "cache")
    with pytest.raises(CacheMismatchError, match="max_length: teacher cache has 32, this run has 16"):
        build(teacher, tokenizer, split, tmp_path / "cache", max_length=16)
    with pytest.raises(CacheMismatchError, match="label_names"):
        build(teacher, tokenizer, split, tmp_path / "cache", label_names=["neg", "pos"])


@pytest.mark.fault
def test_interrupted_pass_resumes_without_redoing_finished_shards(tokenizer, tmp_path, monkeypatch):
    split, teacher = make_split(200), tiny_bert(2)
    reference = build(teacher, tokenizer, split, tmp_path / "reference")
    real_run_shard = teacher_pass._run_shard
    calls = []

    def failing_run_shard(*args, **kwargs):
        calls.append(len(args[3]))
        if len(calls) == 3:
            raise KeyboardInterrupt("killed mid-pass")
        return real_run_shard(*args, **kwargs)

    monkeypatch.setattr(teacher_pass, "_run_shard", failing_run_shard)
    with pytest.raises(KeyboardInterrupt):
        build(teacher, tokenizer, split, tmp_path / "cache")
    with pytest.raises(FileNotFoundError, match="interrupted teacher pass"):
        TeacherCache.open(str(tmp_path / "cache"))
    calls.clear()
    resumed = build(teacher, tokenizer, split, tmp_path / "cache")
    assert len(calls) == 2  # 4 shards of 64/64/64/8 rows: the first two were kept
    for name in ("hidden", "logits", "labels", "example_ids"):
        assert np.array_equal(getattr(resumed, name), getattr(reference, name))


@pytest.mark.fault
def test_corrupt_shard_is_recomputed_and_corrupt_cache_is_refused(tokenizer, tmp_path, monkeypatch):
    split, teacher = make_split(200), tiny_bert(2)
    reference = build(teacher, tokenizer, split, tmp_path / "reference")
    real_merge = teacher_pass.merge_shards
    monkeypatch.setattr(teacher_pass, "merge_shards", lambda *a, **k: (_ for _ in ()).throw(SystemExit("stop")))
    with pytest.raises(SystemExit):
        build(teacher, tokenizer, split, tmp_path / "cache")
    shard = tmp_path / "cache" / "shards" / "shard-00001.safetensors"
    shard.write_bytes(shard.read_bytes()[:-40])  # truncated
    monkeypatch.setattr(teacher_pass, "merge_shards", real_merge)
    resumed = build(teacher, tokenizer, split, tmp_path / "cache")
    assert np.array_equal(resumed.hidden, reference.hidden)
    hidden_file = tmp_path / "cache" / "hidden.npy"
    data = bytearray(hidden_file.read_bytes())
    data[-3] ^= 0xFF
    hidden_file.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheError, match="hidden.npy is missing or corrupt"):
        TeacherCache.open(str(tmp_path / "cache"))


@pytest.mark.bad_input
def test_lookup_of_unknown_ids_is_a_clear_error(tokenizer, tmp_path):
    cache = build(tiny_bert(2), tokenizer, make_split(50), tmp_path / "cache")
    with pytest.raises(KeyError, match=r"\[50, 99\] are not in the teacher cache"):
        cache.lookup([3, 50, 99])


@pytest.mark.bad_input
def test_duplicate_ids_and_nan_teacher_outputs_are_refused(tokenizer, tmp_path):
    split = make_split(40)
    duplicated = split.map(lambda row, i: {"example_id": min(i, 30)}, with_indices=True)
    with pytest.raises(ValueError, match=r"Duplicate example ids.*\[30\]"):
        build(tiny_bert(2), tokenizer, duplicated, tmp_path / "dup")
    broken = tiny_bert(2)
    with torch.no_grad():
        broken.bert.embeddings.word_embeddings.weight[VOCAB.index("awful")] = float("nan")
    with pytest.raises(FloatingPointError, match="NaN/Inf for example ids"):
        build(broken, tokenizer, make_split(40), tmp_path / "nan")
    assert not os.path.exists(tmp_path / "nan" / "meta.json")


@pytest.mark.parametrize("dtype,tolerance", [("float16", 1e-3), ("bfloat16", 1e-2)])
def test_half_precision_cache_roundtrips(tokenizer, tmp_path, dtype, tolerance):
    split, teacher = make_split(60), tiny_bert(2)
    full = build(teacher, tokenizer, split, tmp_path / "f32")
    half = build(teacher, tokenizer, split, tmp_path / dtype, dtype=dtype)
    h32, _ = full.lookup(np.arange(60))
    h16, _ = half.lookup(np.arange(60))
    assert h16.dtype == torch.float32
    torch.testing.assert_close(h16, h32, atol=tolerance * h32.abs().max().item(), rtol=tolerance)


@pytest.mark.fault
def test_a_teacher_with_other_encoder_weights_but_the_same_head_is_refused(tokenizer, tmp_path, monkeypatch):
    split, teacher = make_split(100), tiny_bert(2)
    retrained = tiny_bert(2)
    with torch.no_grad():
        retrained.bert.encoder.layer[0].attention.self.query.weight[0, 0] += 0.5
    torch.testing.assert_close(retrained.classifier.weight, teacher.classifier.weight, atol=0, rtol=0)
    cache = build(teacher, tokenizer, split, tmp_path / "cache")
    assert cache.fingerprint["teacher_sha256"] == sha256_state_dict(teacher) != sha256_state_dict(retrained)
    assert "teacher_head_sha256" in cache.fingerprint  # still printed by the model card
    with pytest.raises(CacheMismatchError, match="teacher_sha256: teacher cache has '.*', this run has '.*'") as info:
        build(retrained, tokenizer, split, tmp_path / "cache")
    assert "teacher_head_sha256" not in str(info.value)
    # The same for the fingerprint of an interrupted pass (shards/fingerprint.json).
    monkeypatch.setattr(teacher_pass, "merge_shards", lambda *a, **k: (_ for _ in ()).throw(SystemExit("stop")))
    with pytest.raises(SystemExit):
        build(teacher, tokenizer, split, tmp_path / "partial")
    monkeypatch.undo()
    with pytest.raises(CacheMismatchError, match="interrupted teacher pass at .*\n  teacher_sha256: "):
        build(retrained, tokenizer, split, tmp_path / "partial")
    build(teacher, tokenizer, split, tmp_path / "partial")


def test_teacher_sha256_covers_names_dtypes_and_bfloat16_bytes():
    teacher = tiny_bert(2).to(torch.bfloat16)
    reference = sha256_state_dict(teacher)
    assert sha256_state_dict(tiny_bert(2).to(torch.bfloat16)) == reference
    with torch.no_grad():
        teacher.bert.embeddings.LayerNorm.bias[3] = 0.0078125  # one bf16 value, not in the head
    assert sha256_state_dict(teacher) != reference
    assert sha256_state_dict(tiny_bert(2)) != sha256_state_dict(tiny_bert(2).to(torch.bfloat16))


@pytest.mark.bad_input
@pytest.mark.parametrize("weight", ["bert.pooler.dense.weight", "classifier.weight"])
def test_nan_teacher_weights_are_a_clear_error(tokenizer, tmp_path, weight):
    broken = tiny_bert(2)
    with torch.no_grad():
        broken.get_parameter(weight)[0, 0] = float("nan")
    message = r"NaN/Inf for example ids \[0, 1, 2, 3\] \(all of them: the teacher's weights are likely not finite\)"
    with pytest.raises(FloatingPointError, match=message) as info:
        build(broken, tokenizer, make_split(40), tmp_path / "nan")
    assert "--teacher_dtype" not in str(info.value) and "without --bf16/--fp16" in str(info.value)
    assert not os.path.exists(tmp_path / "nan" / "meta.json")
