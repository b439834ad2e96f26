"""Automatic choice of S and β (`--auto_hparams`): successive halving on a validation split.

Round 1 trains every (S, β) candidate for a small budget (a fraction of an epoch up to a few epochs); each later
round keeps the best `keep` candidates and trains them again with twice the budget. Poor candidates are thus
stopped early. Cheap because the teacher cache is reused: no candidate runs the teacher. The chosen values and the
whole table go into the model card. Grid and budgets are ours (the paper does not say how it chose S and β).
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field

from transformers import AutoTokenizer, set_seed

from hf_lelp.data.load import TextClassificationData
from hf_lelp.data.tokens import tokenize_split
from hf_lelp.training.arguments import DataArguments, ModelArguments
from hf_lelp.training.builder import build_student, build_subclasses, tokenizer_source
from hf_lelp.training.config import LELPConfig
from hf_lelp.training.trainer import text_trainer

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


def choose_hparams_automatically(
    data: TextClassificationData, data_args: DataArguments, model_args: ModelArguments, args: LELPConfig, cache
) -> tuple[LELPConfig, dict]:
    """--auto_hparams: successive halving over (S, β) on the validation split. Returns new arguments with the
    chosen S and β (`args` itself is left as given) and the sweep for the card."""
    if "validation" not in data.splits or not any(y >= 0 for y in data.splits["validation"]["label"]):
        raise ValueError(
            "--auto_hparams needs a labelled 'validation' split: pass --validation_file, or --validation_from_train N "
            "to carve N labelled train examples into one (never the test split)."
        )
    candidates = candidate_grid(
        args.auto_num_subclasses, args.auto_subclass_temperatures, cache.hidden_size - cache.num_labels
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_source(model_args))
    train_set = tokenize_split(data.splits["train"], tokenizer, data_args.max_length)
    validation = tokenize_split(data.splits["validation"], tokenizer, data_args.max_length)

    def evaluate(candidate: dict, epochs: float) -> dict:
        trial = copy.copy(args)
        for key, value in {**candidate, "num_train_epochs": epochs, "auto_hparams": False}.items():
            setattr(trial, key, value)
        trial.output_dir = os.path.join(args.output_dir, "auto_hparams")
        trial.save_strategy, trial.push_to_hub, trial.eval_strategy = "no", False, "no"
        set_seed(args.seed)
        subclasses = build_subclasses(cache, data, model_args, trial)
        student, _ = build_student(data, model_args, trial, subclasses, cache.hidden_size, data_args.max_length)
        trainer = text_trainer(student, trial, tokenizer, data, cache, subclasses, train_set)
        trainer.train()
        metrics = trainer.evaluate(validation, metric_key_prefix="validation")
        del trainer, student
        gc.collect()
        return {"accuracy": metrics["validation_accuracy"], "macro_f1": metrics["validation_macro_f1"]}

    result = successive_halving(candidates, evaluate, args.auto_budget_epochs, keep=args.auto_keep)
    logger.info("--auto_hparams chose %s", result.chosen)
    # A new object (validated again), so one LELPConfig never means two runs' S.
    chosen = dataclasses.replace(
        args,
        num_subclasses=result.chosen["num_subclasses"],
        subclass_temperature=result.chosen["subclass_temperature"],
    )
    return chosen, result.as_dict()
