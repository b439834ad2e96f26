"""Where a teacher cache lives when no folder is given: under $HF_LELP_CACHE, keyed by the teacher and a key of its
inputs.
"""

from __future__ import annotations

import hashlib
import json
import os


def teacher_cache_folder(teacher: str, key: dict) -> str:
    """$HF_LELP_CACHE/teacher_caches/<teacher>-<hash of key>: the default cache folder of the CLI and of the
    one-call Python API (hf_lelp.training.one_call), which keys it by content."""
    home = os.environ.get("HF_LELP_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "hf_lelp")
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    name = os.path.basename(os.path.normpath(teacher)) or "teacher"
    return os.path.join(home, "teacher_caches", f"{name}-{digest}")
