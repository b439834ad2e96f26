"""Hyperparameter grids and their selection on the validation split (never on test).

Staged, so that the grid stays affordable on a CPU: stage 1 tunes CE (learning rate) and KD (learning rate, τ);
every teacher-based method then starts from KD's best (learning rate, τ) and tunes only its own knobs:
the feature weight for fitnet/rkd/pkt, (S, β) for the pseudo-subclass methods. The oracle's S is the number of
fine labels, and its within-class targets are one-hot, so it has no knob of its own.
"""

from __future__ import annotations

from dataclasses import dataclass

FEATURE_METHODS = ("fitnet", "rkd", "pkt")


@dataclass(frozen=True)
class SearchSpace:
    learning_rates: tuple[float, ...] = (1e-3, 3e-3)
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)
    feature_weights: tuple[float, ...] = (0.1, 1.0, 10.0)
    subclass_counts: tuple[int, ...] = (2, 4, 8)
    subclass_temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    ensemble_size: int = 4
    s_sweep: tuple[int, ...] = (1, 2, 4, 8, 16)
    beta_sweep: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)

    @classmethod
    def smoke(cls) -> SearchSpace:
        """Two values where a choice is made, one elsewhere: a fast end-to-end check of the machinery."""
        return cls((1e-3, 3e-3), (2.0,), (1.0,), (2,), (1.0,), 2, (1, 2), (1.0, 2.0))

    def stage_one_grid(self, method: str) -> list[dict]:
        if method == "ce":
            return [{"learning_rate": lr} for lr in self.learning_rates]
        if method == "kd":
            return [{"learning_rate": lr, "temperature": t} for lr in self.learning_rates for t in self.temperatures]
        raise ValueError(f"{method} is tuned in stage two, from KD's best learning rate and temperature.")

    def stage_two_grid(self, method: str, anchor: dict, unlabelled: bool = False) -> list[dict]:
        """Configurations of a teacher-based method around `anchor` (KD's best learning rate and τ)."""
        base = {"learning_rate": anchor["learning_rate"], "temperature": anchor["temperature"]}
        if unlabelled and method not in FEATURE_METHODS:
            base["grouping"] = "prediction"  # per-class PCA / clusters over the teacher's predicted classes
        if method in FEATURE_METHODS:
            return [{**base, "feature_loss_weight": w} for w in self.feature_weights]
        if method == "oracle":
            return [{**base, "subclass_temperature": 1.0}]
        extra = {"ensemble_size": self.ensemble_size} if method == "random_ensemble" else {}
        return [
            {**base, **extra, "num_subclasses": s, "subclass_temperature": b}
            for s in self.subclass_counts
            for b in self.subclass_temperatures
        ]


def select(trials: list[dict]) -> dict:
    """The trial with the best validation accuracy (macro-F1 breaks ties, then the earlier grid entry)."""
    if not trials:
        raise ValueError("No trials to select from.")
    if any(t.get("split", "validation") != "validation" for t in trials):
        raise ValueError("Hyperparameters are selected on validation trials only.")
    return max(enumerate(trials), key=lambda item: (item[1]["accuracy"], item[1]["macro_f1"], -item[0]))[1]
