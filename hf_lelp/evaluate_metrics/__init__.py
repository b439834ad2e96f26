"""`evaluate` metric scripts shipped with hf_lelp, so that metrics load offline (no Hub, no network).

Each `<name>.py` holds one `evaluate.Metric` and is loaded by path: `evaluate.load(".../evaluate_metrics/f1.py")`.
evaluate copies the script (and the `_classification.py` it imports relatively) into its module cache and imports
it from there, exactly as for a metric fetched from the Hub. The keyword arguments follow the Hub's metrics of the
same name (scikit-learn's conventions), so that swapping one for the other gives the same numbers.
"""

from __future__ import annotations

from pathlib import Path

METRICS_DIR = Path(__file__).resolve().parent
SHIPPED_METRICS = ("accuracy", "f1", "matthews_correlation", "precision", "recall")


def metric_script(name: str) -> str:
    """The path of the shipped metric script `name` (one of SHIPPED_METRICS)."""
    return str(METRICS_DIR / f"{name}.py")
