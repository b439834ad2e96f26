"""Automatic choice of S and β (`--auto_hparams`): successive halving on a validation split.

Round 1 trains every (S, β) candidate for a small budget (a fraction of an epoch up to a few epochs); each later
round keeps the best `keep` candidates and trains them again with twice the budget. Poor candidates are thus
stopped early. Cheap because the teacher cache is reused: no candidate runs the teacher. The chosen values and the
whole table go into the model card. Grid and budgets are ours (the paper does not say how it chose S and β).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field

logger = logging.getLogger(__name__)


@dataclass
class AutoResult:
    chosen: dict
    table: list[dict] = field(default_factory=list)  # one row per (round, candidate): budget and validation scores

    def as_dict(self) -> dict:
        return {"chosen": self.chosen, "table": self.table}


def candidate_grid(subclass_counts: list[int], temperatures: list[float], max_subclasses: int) -> list[dict]:
    """(S, β) pairs, dropping S values the embedding cannot hold (D − C < S)."""
    usable = [s for s in subclass_counts if 1 <= s <= max_subclasses]
    if not usable:
        raise ValueError(
            f"--auto_num_subclasses {subclass_counts}: none fits the teacher embedding (at most S = {max_subclasses})."
        )
    return [{"num_subclasses": s, "subclass_temperature": b} for s in usable for b in temperatures]


def successive_halving(
    candidates: list[dict],
    evaluate: Callable[[dict, float], dict],
    budget: float,
    rounds: int = 2,
    keep: int = 3,
) -> AutoResult:
    """`evaluate(candidate, epochs)` trains from scratch and returns validation {"accuracy", "macro_f1"}."""
    if not candidates:
        raise ValueError("No candidates for --auto_hparams.")
    table, alive = [], list(candidates)
    for round_index in range(rounds):
        epochs = budget * 2**round_index
        scored = []
        for candidate in alive:
            metrics = evaluate(candidate, epochs)
            row = {"round": round_index + 1, "epochs": epochs, **candidate, **metrics}
            table.append(row)
            scored.append((metrics["accuracy"], metrics.get("macro_f1", 0.0), -candidates.index(candidate), candidate))
            logger.info("auto_hparams round %d, %s: %s", round_index + 1, candidate, metrics)
        scored.sort(key=lambda item: item[:3], reverse=True)
        alive = [item[3] for item in scored[: max(1, keep if round_index < rounds - 1 else 1)]]
        if len(alive) == 1:
            break
    return AutoResult(chosen=alive[0], table=table)
