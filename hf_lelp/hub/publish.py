"""What may leave the machine: an allowlist of files staged for every Hub commit, and a scan before upload.

The Trainer uploads its whole `output_dir` (minus `_*` and `checkpoint-*`), so anything a run leaves there —
a teacher cache, the pickled `training_args.bin` (which holds `hub_token`), results with local paths — would be
published. We never upload `output_dir` itself: each commit is built in a staging folder from the allowlist
below, then scanned (no token bytes, no pickle outside resumable checkpoint state, no local absolute path, no
cache file); a finding refuses the push with the file named.
"""

from __future__ import annotations

import fnmatch
import json
import os
import shutil
import tempfile

# The published student: weights, config, tokenizer, card, and our documented side files.
MODEL_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model-*-of-*.safetensors",
    "model.safetensors.index.json",
    "adapter_config.json",
    "adapter_model.safetensors",
)
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "*.model",  # sentencepiece
    "chat_template.jinja",
)
SIDE_FILES = ("README.md", "lelp_config.json", "training_args.json", "lelp_subclass_head.safetensors")
PUBLISHED = MODEL_FILES + TOKENIZER_FILES + SIDE_FILES
# Only `hub_strategy=checkpoint|all_checkpoints` (resuming elsewhere) adds the Trainer's state; these .pt/.pth
# files are pickles of tensors, never of the arguments (training_args.bin is not on any list).
CHECKPOINT_STATE = (
    "optimizer.pt",
    "scheduler.pt",
    "scaler.pt",
    "rng_state.pth",
    "rng_state_*.pth",
    "trainer_state.json",
    "lelp_checkpoint_complete.json",
    "lelp_feature_regressor.safetensors",
)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle")
# Files of a teacher cache or of fitted projections: an embedding and a label per training example.
CACHE_NAMES = ("hidden.npy", "logits.npy", "labels.npy", "example_ids.npy", "head.safetensors", "meta.json")
TEXT_SUFFIXES = (".json", ".md", ".txt", ".yaml", ".yml", ".jinja")
PATH_FIELDS = ("output_dir", "logging_dir", "resume_from_checkpoint", "hub_model_id")


class UnsafePushError(RuntimeError):
    """A file staged for the Hub holds something that must not be published."""


def _allowed(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def stage(folder: str, patterns: tuple[str, ...] = PUBLISHED) -> str:
    """A new staging folder holding copies of the allowlisted top-level files of `folder`."""
    staging = tempfile.mkdtemp(prefix="hf-lelp-push-")
    for name in sorted(os.listdir(folder)):
        source = os.path.join(folder, name)
        if os.path.isfile(source) and _allowed(name, patterns):
            # A copy, not a hard link: a background upload must not see a file the run rewrites meanwhile.
            shutil.copy2(source, os.path.join(staging, name))
    return staging


def public_training_args(args_dict: dict) -> dict:
    """TrainingArguments as published: tokens masked (transformers does it), local paths cut to their basename."""
    public = {}
    for key, value in args_dict.items():
        if key.endswith("_token"):
            value = None if value is None else f"<{key.upper()}>"
        elif isinstance(value, str) and os.path.isabs(value):
            value = os.path.basename(os.path.normpath(value))
        public[key] = value
    return public


def public_name(name_or_path: str | None) -> str | None:
    """A Hub id stays as it is; a local path becomes its folder's basename (a machine's paths are never published)."""
    if not name_or_path:
        return name_or_path
    if os.path.isabs(name_or_path) or os.path.exists(name_or_path) or name_or_path.startswith((".", "~")):
        return os.path.basename(os.path.normpath(name_or_path))
    return name_or_path


def _is_pickle(path: str) -> bool:
    if path.endswith(PICKLE_SUFFIXES):
        return True
    with open(path, "rb") as handle:
        head = handle.read(2)
    # Pickle protocols 2-5 start with PROTO; a zip whose first entry is data.pkl is torch.save's format.
    return (len(head) == 2 and head[0] == 0x80 and 2 <= head[1] <= 5) or _is_torch_zip(path)


def _is_torch_zip(path: str) -> bool:
    with open(path, "rb") as handle:
        if handle.read(4) != b"PK\x03\x04":
            return False
        handle.seek(26)
        header = handle.read(4)
        name_length = int.from_bytes(header[:2], "little")
        handle.seek(30)
        return handle.read(name_length).endswith(b"data.pkl")


def _contains(path: str, needles: list[bytes]) -> bytes | None:
    overlap = max((len(n) for n in needles), default=0)
    tail = b""
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 22):
            window = tail + chunk
            for needle in needles:
                if needle in window:
                    return needle
            tail = window[-overlap:] if overlap else b""
    return None


def machine_paths() -> list[str]:
    """This machine's own folders, whatever the run was given: home, working and temporary directories."""
    return [os.path.expanduser("~"), os.getcwd(), tempfile.gettempdir()]


def _path_needles(local_paths: list[str]) -> list[bytes]:
    """Each path as written and as resolved (symlinks), longest first; "/" alone names no folder."""
    paths = set()
    for path in local_paths:
        if path:
            paths |= {os.path.abspath(path), os.path.realpath(path)}
    return sorted((p.encode() for p in paths if p.strip("/")), key=len, reverse=True)


# Bytes that continue a path component: "/home/u" is not found in "/home/user", nor "/tmp" in "/var/tmp".
PATH_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.~")


def _contains_path(path: str, needles: list[bytes]) -> bytes | None:
    """The first of `needles` found in the file as a whole path (not inside a longer component or path)."""
    with open(path, "rb") as handle:
        content = handle.read()
    for needle in needles:
        start = content.find(needle)
        while start >= 0:
            end = start + len(needle)
            before = content[start - 1] if start else None
            after = content[end] if end < len(content) else None
            if before not in PATH_CHARS and after not in PATH_CHARS:
                return needle
            start = content.find(needle, start + 1)
    return None


def relative_trainer_state(staging: str, output_dir: str) -> None:
    """trainer_state.json names the best checkpoint by its local path: publish it relative to output_dir (the
    folder layout a resume elsewhere rebuilds), so that the scan stays strict about every other path."""
    for root, _, files in os.walk(staging):
        if "trainer_state.json" not in files:
            continue
        path = os.path.join(root, "trainer_state.json")
        with open(path, encoding="utf-8") as handle:
            state = json.load(handle)
        best = state.get("best_model_checkpoint")
        if isinstance(best, str) and os.path.isabs(best):
            state["best_model_checkpoint"] = os.path.relpath(best, os.path.abspath(output_dir))
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(state, handle, indent=2, sort_keys=True)


def scan(staging: str, secrets: list[str], local_paths: list[str], allow_pickles: bool = False) -> None:
    """Refuse (UnsafePushError naming the file) a staged folder that holds a secret, a pickle, a cache file or a
    local absolute path: one of `local_paths` or of this machine's home, working and temporary directories.
    `allow_pickles` is for resumable checkpoint state (optimizer/scheduler/RNG tensors)."""
    secrets = [s.encode() for s in secrets if s and len(s) >= 4]
    paths = _path_needles([*local_paths, *machine_paths()])
    for root, _, files in os.walk(staging):
        for name in files:
            path = os.path.join(root, name)
            shown = os.path.relpath(path, staging)
            if _contains(path, secrets):
                raise UnsafePushError(f"Push refused: {shown} contains the Hub token. Nothing was uploaded.")
            if name in CACHE_NAMES or name.endswith(".npy"):
                raise UnsafePushError(f"Push refused: {shown} looks like a teacher cache file. Nothing was uploaded.")
            if not allow_pickles and _is_pickle(path):
                raise UnsafePushError(
                    f"Push refused: {shown} is a pickle; a published model holds none. Nothing was uploaded."
                )
            if name.endswith(TEXT_SUFFIXES):
                found = _contains_path(path, paths)
                if found:
                    raise UnsafePushError(
                        f"Push refused: {shown} contains the local path {found.decode()}; write a Hub id or a "
                        "basename instead. Nothing was uploaded."
                    )


def sanitise_adapter_config(staging: str, base_model: str | None) -> None:
    """PEFT writes the local folder it loaded the base from; publish the Hub id (or basename) instead."""
    path = os.path.join(staging, "adapter_config.json")
    if not os.path.isfile(path):
        return
    with open(path, encoding="utf-8") as handle:
        config = json.load(handle)
    config["base_model_name_or_path"] = public_name(base_model or config.get("base_model_name_or_path"))
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(config, handle, indent=2, sort_keys=True)
