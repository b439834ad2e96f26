"""steps.py env: versions, the GPU and hf-lelp's environment, in env.json."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from steps_common import read_json, write_json


# ---------------------------------------------------------------------------------------------------------- env
def environment(out: str) -> int:
    import importlib.metadata

    info: dict = {"python": sys.version.split()[0], "executable": sys.executable}
    versions = {}
    for name in (
        "torch", "transformers", "accelerate", "datasets", "evaluate", "dill", "multiprocess", "fsspec", "pyarrow",
        "huggingface_hub", "peft", "safetensors", "tokenizers", "typing_extensions", "deepspeed",
    ):  # fmt: skip
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    info["versions"] = versions
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version,clocks.max.sm", "--format=csv"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        info["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.SubprocessError) as error:
        info["nvidia_smi"] = f"unavailable: {error}"
    import torch

    info["cuda"] = {
        "available": torch.cuda.is_available(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "capability": list(torch.cuda.get_device_capability(0)) if torch.cuda.is_available() else None,
        "bf16": torch.cuda.is_available() and torch.cuda.is_bf16_supported(),
        "torch_cuda": torch.version.cuda,
    }
    info["cpu_count"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["assets"] = read_json(os.path.join(os.environ.get("GPU_CARRY_DIR", ""), "assets", "MANIFEST.json"))
    try:
        from hf_lelp.environment import environment as hf_lelp_environment

        info["hf_lelp_env"] = hf_lelp_environment()
    except Exception as error:  # recorded: the later steps will fail for the same reason
        info["hf_lelp_env"] = f"failed: {type(error).__name__}: {error}"
    write_json(os.path.join(out, "env.json"), info)
    print(json.dumps(info, indent=2, default=str))
    return 0 if info["cuda"]["available"] and isinstance(info["hf_lelp_env"], dict) else 1
