"""What hf-lelp wrote in an output folder, listed in a manifest beside it.

A save into a folder first removes the files of a model an earlier run saved there (another run's adapter must
not sit beside this run's weights, where `from_pretrained` would load it and a push would upload it), and then
records what it wrote. A folder holding model files that no manifest lists holds someone else's model: a run
refuses to write there. Files the manifest does not list (the user's own) are never touched.
"""

from __future__ import annotations

import fnmatch
import logging
import os
from contextlib import contextmanager

from hf_lelp.base.io_utils import read_json, write_json_atomic
from hf_lelp.hub.publish import PUBLISHED

logger = logging.getLogger(__name__)

MANIFEST = ".hf_lelp_files.json"
OWN_PREFIX = ".hf_lelp"  # the manifest and the lock file: never a model's file
# Files that make a folder hold a model (transformers, PEFT, other frameworks' exports).
MODEL_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "adapter_config.json",
    "adapter_model.bin",
    "tf_model.h5",
    "flax_model.msgpack",
)
# What hf-lelp writes beside a saved model, for folders without a manifest (written by an older hf-lelp) or whose
# last save was interrupted before it could list its files.
WRITTEN_BY_HF_LELP = (*PUBLISHED, "results.json", "training_args.bin")
LEGACY_MARK = "lelp_config.json"


def _matches(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(name, pattern) for pattern in patterns)


def _listing(folder: str) -> dict[str, tuple[int, int, int]]:
    """The folder's own top-level files (not ours) with what tells a rewritten file apart."""
    if not os.path.isdir(folder):
        return {}
    files = {}
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False) and not entry.name.startswith(OWN_PREFIX):
            stat = entry.stat(follow_symlinks=False)
            files[entry.name] = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
    return files


def _manifest(folder: str) -> dict | None:
    path = os.path.join(folder, MANIFEST)
    return read_json(path) if os.path.isfile(path) else None


def recorded_files(folder: str) -> set[str] | None:
    """The files hf-lelp wrote in `folder`; None when nothing shows that hf-lelp wrote there."""
    manifest = _manifest(folder)
    present = _listing(folder)
    if manifest is not None and not manifest.get("saving"):
        return set(manifest.get("files", []))
    if manifest is not None or LEGACY_MARK in present:
        return {name for name in present if _matches(name, WRITTEN_BY_HF_LELP)}
    return None


def foreign_model_files(folder: str) -> list[str]:
    """Model files in `folder` that hf-lelp did not write (the teacher, a student checkpoint, a user's model)."""
    ours = recorded_files(folder) or set()
    return sorted(name for name in _listing(folder) if _matches(name, MODEL_PATTERNS) and name not in ours)


def _write_manifest(folder: str, run: str, files, saving: bool = False) -> None:
    write_json_atomic(os.path.join(folder, MANIFEST), {"run": run, "files": sorted(files), "saving": saving})


@contextmanager
def fresh_save(folder: str, run: str):
    """Around a save into `folder` by run `run`: the files an earlier run saved there are removed first (a save
    of this same run keeps its own, e.g. results.json), and what this save wrote is recorded afterwards."""
    os.makedirs(folder, exist_ok=True)
    manifest = _manifest(folder)
    same_run = manifest is not None and manifest.get("run") == run
    kept = set(manifest.get("files", [])) if same_run else set()
    if not same_run:
        stale = sorted(recorded_files(folder) or ())
        if stale:
            logger.info("Removing the files of the model saved earlier in %s: %s", folder, ", ".join(stale))
        for name in stale:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                os.remove(path)
    # Marked as a save in progress: a kill from here on leaves files that are still known to be hf-lelp's.
    _write_manifest(folder, run, kept, saving=True)
    before = _listing(folder)
    yield
    after = _listing(folder)
    written = {name for name, stat in after.items() if before.get(name) != stat}
    _write_manifest(folder, run, (kept & set(after)) | written)


def record_files(folder: str, run: str, *names: str) -> None:
    """Add files this run wrote in `folder` after its save (results.json, the model card)."""
    manifest = _manifest(folder) or {}
    _write_manifest(folder, run, set(manifest.get("files", [])) | set(names), saving=bool(manifest.get("saving")))
