"""Fingerprints of a teacher cache: what its rows were computed from (teacher weights, tokenizer, head, split,
versions), and the check that a cache or projections file matches the current run."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile

import datasets
import torch

from hf_lelp.base.io_utils import sha256_tensors
from hf_lelp.base.version import __version__
from hf_lelp.cache.store import FINGERPRINT_KEYS, TOKENIZER_VOLATILE_KEYS, CacheMismatchError
from hf_lelp.data.tokens import dataset_fingerprint


def sha256_state_dict(model: torch.nn.Module) -> str:
    """sha256 over every (name, dtype, shape, raw bytes) of the state_dict in name order, one tensor at a time."""
    digest = hashlib.sha256()
    state = model.state_dict()
    for name in sorted(state):
        tensor = state[name].detach()
        digest.update(f"{name}\0{tensor.dtype}\0{tuple(tensor.shape)}\0".encode())
        # Raw bytes through a uint8 view: also covers dtypes numpy lacks (bfloat16, float8).
        digest.update(tensor.cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _canonical_tokenizer_file(path: str) -> bytes:
    """A saved tokenizer file's bytes; a JSON file without the keys that do not change the tokens."""
    with open(path, "rb") as handle:
        data = handle.read()
    if not path.endswith(".json"):
        return data
    payload = json.loads(data)
    if isinstance(payload, dict):
        payload = {k: v for k, v in payload.items() if k not in TOKENIZER_VOLATILE_KEYS}
    return json.dumps(payload, sort_keys=True).encode()


def sha256_tokenizer(tokenizer) -> str:
    """sha256 over the files `save_pretrained` writes for `tokenizer` (vocabulary, merges, normaliser, special and
    added tokens, options), by name; a copy loaded from elsewhere gives the same value, another vocabulary not."""
    digest = hashlib.sha256()
    with tempfile.TemporaryDirectory(prefix="hf_lelp-tokenizer-") as folder:
        tokenizer.save_pretrained(folder)
        for root, _, files in sorted(os.walk(folder)):
            for name in sorted(files):
                path = os.path.join(root, name)
                digest.update(f"{os.path.relpath(path, folder)}\0".encode())
                digest.update(hashlib.sha256(_canonical_tokenizer_file(path)).digest())
    return digest.hexdigest()


def make_fingerprint(
    teacher_name: str,
    head: torch.nn.Linear,
    dataset_name: str,
    split: datasets.Dataset,
    max_length: int,
    label_names: list[str],
    dtype: str,
    teacher: torch.nn.Module | None = None,
    tokenizer=None,
) -> dict:
    import transformers

    fingerprint = {
        "teacher": teacher_name,
        "teacher_head_sha256": sha256_tensors(head.weight, head.bias if head.bias is not None else torch.zeros(1)),
        "dataset": dataset_name,
        "dataset_sha256": dataset_fingerprint(split),
        "num_examples": len(split),
        "max_length": int(max_length),
        "label_names": list(label_names),
        "dtype": dtype,
        "hf_lelp_version": __version__,
        "transformers_version": transformers.__version__,
        "torch_version": torch.__version__,
    }
    if teacher is not None:
        fingerprint["teacher_sha256"] = sha256_state_dict(teacher)
    if tokenizer is not None:
        fingerprint["tokenizer_sha256"] = sha256_tokenizer(tokenizer)
    return fingerprint


def check_fingerprint(found: dict, expected: dict, what: str, path: str) -> None:
    """Raise CacheMismatchError naming every differing field with both values."""

    def shown(value) -> str:
        return "nothing (written by an older hf-lelp)" if value is None else repr(value)

    diffs = [
        f"{key}: {what} has {shown(found.get(key))}, this run has {expected.get(key)!r}"
        for key in FINGERPRINT_KEYS
        if key in expected and found.get(key) != expected.get(key)
    ]
    if diffs:
        raise CacheMismatchError(
            f"The {what} at {path} was built for other inputs:\n  "
            + "\n  ".join(diffs)
            + f"\nUse another --cache_dir, or delete {path} to rebuild it."
        )
