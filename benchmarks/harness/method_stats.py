"""Per-method statistics of a benchmark result file, in the report's method order (report.py, strong_report.py)."""

from __future__ import annotations

import numpy as np

from hf_lelp.methods.registry import registered_methods

# The report's row and bar order: labels only and KD, the embedding baselines, LELP and its ablations, the oracle. Not
# the registry's order (it lists KD before CE and pca before no_rotation), which would reorder the committed
# RESULTS.md; a registered method missing here follows in registry order, any other name (an old file) sorted.
METHOD_ORDER = (
    "ce",
    "kd",
    "fitnet",
    "rkd",
    "pkt",
    "lelp",
    "no_rotation",
    "pca",
    "random",
    "random_ensemble",
    "kmeans",
    "oracle",
)


def ordered(methods) -> list[str]:
    order = METHOD_ORDER + tuple(m for m in registered_methods() if m not in METHOD_ORDER)
    return [m for m in order if m in methods] + sorted(set(methods) - set(order))


def method_stats(result: dict, key: str = "accuracy") -> dict[str, tuple[float, float, int]]:
    """method -> (mean, sample std, number of seeds) of the test metric."""
    stats = {}
    # In METHOD_ORDER, not set order (which varies with the hash seed): ties for `best` then resolve the same way
    # in every process, so the report stays a pure function of the result files.
    for method in ordered({r["method"] for r in result["runs"]}):
        values = np.array([r[key] for r in result["runs"] if r["method"] == method], dtype=float)
        stats[method] = (float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0, len(values))
    return stats
