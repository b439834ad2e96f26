"""Run the benchmark of one prepared dataset: validation search, final seeds on test, S and β sweeps.

Student runs go to a pool of single-threaded worker processes (an MLP student does not use two cores well)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from hf_lelp.base.io_utils import write_json_atomic
from hf_lelp.methods.registry import get_method

from .machine import machine_info
from .prepare import PreparedDataset
from .search import AUTO_KNOBS, PAPER_METHOD, SearchSpace, needs_fine_labels, search_order, select

logger = logging.getLogger(__name__)
WORKER_THREADS = 1


def _init_worker() -> None:
    import torch

    torch.set_num_threads(WORKER_THREADS)
    logging.basicConfig(level=logging.WARNING)


def _job(folder: str, method: str, hparams: dict, seed: int, split: str) -> dict:
    from .students import run_student

    with tempfile.TemporaryDirectory() as output_dir:
        metrics = run_student(folder, method, hparams, seed, split, output_dir)
    return {"method": method, "seed": seed, "split": split, "hparams": hparams, **metrics}


class Pool:
    def __init__(self, workers: int):
        self.workers = workers
        self.executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)

    def run(self, jobs: list[tuple]) -> list[dict]:
        futures = [self.executor.submit(_job, *job) for job in jobs]
        return [future.result() for future in futures]

    def close(self) -> None:
        self.executor.shutdown()


def benchmark_dataset(
    prepared: PreparedDataset,
    methods: list[str],
    seeds: list[int],
    pool: Pool,
    sweeps: bool,
    command: str,
    output_path: str,
    unlabelled: bool = False,
    space: SearchSpace | None = None,
) -> dict:
    space = space or SearchSpace()
    folder, start = prepared.folder, time.time()
    selection_seed = seeds[0]
    trials: list[dict] = []
    if prepared.fine_labels("train") is None:
        skipped = [m for m in methods if needs_fine_labels(m)]
        if skipped:
            logger.warning("%s has no fine labels: skipping %s.", prepared.name, ", ".join(skipped))
        methods = [m for m in methods if m not in skipped]
    chosen: dict[str, dict] = {}
    # In waves: a method's grid starts from the chosen configuration of the method it is tuned after (KD's
    # learning rate and τ for every built-in teacher method but KD); the anchors run even when not asked for.
    for wave in search_order(methods):
        jobs = []
        for m in wave:
            after = get_method(m).search_after
            grid = space.grid(m, chosen[after] if after is not None else None, unlabelled)
            jobs += [(folder, m, h, selection_seed, "validation") for h in grid]
        trials += pool.run(jobs)
        chosen.update({m: select([t for t in trials if t["method"] == m])["hparams"] for m in wave})
    final = [m for m in methods if m in chosen]
    runs = pool.run([(folder, m, chosen[m], seed, "test") for m in final for seed in seeds])
    result = {
        "dataset": prepared.name,
        "track": "mlp_over_frozen_minilm" + ("_unlabelled_transfer" if unlabelled else ""),
        "num_classes": len(prepared.label_names),
        "label_names": prepared.label_names,
        "split_sizes": prepared.split_sizes,
        "teacher": {
            "model": f"{prepared.options['teacher_model']} fine-tuned",
            "accuracy": prepared.teacher_accuracy,
            "macro_f1": prepared.teacher_macro_f1,
        },
        "student": {
            "model": "2-layer MLP (256 hidden) over frozen mean-pooled embeddings of "
            f"{prepared.options['feature_model']} truncated to {prepared.options['feature_layers']} layers"
        },
        "runs": [run_row(r) for r in runs],
        "selection": {"split": "validation", "seed": selection_seed, "trials": [run_row(t) for t in trials]},
        "command": command,
        "prepare_options": prepared.options,
        "search_space": space.record(list(chosen)),
        "machine": {**machine_info(), "student_processes": pool.workers, "threads_per_student": WORKER_THREADS},
    }
    if sweeps and PAPER_METHOD in chosen:
        result["sweeps"] = sweep(prepared, chosen[PAPER_METHOD], seeds, pool, space)
    result["wall_seconds"] = time.time() - start
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    write_json_atomic(output_path, result)
    return result


def sweep(prepared: PreparedDataset, chosen: dict, seeds: list[int], pool: Pool, space: SearchSpace) -> dict:
    """LELP's accuracy against S (β as selected) and against β (S as selected), on validation and test."""
    grids, result = {"num_subclasses": space.s_sweep, "subclass_temperature": space.beta_sweep}, {}
    for key, values in grids.items():
        jobs = [
            (prepared.folder, PAPER_METHOD, {**chosen, key: value}, seed, split)
            for value in values
            for seed in seeds
            for split in ("validation", "test")
        ]
        result[key] = [run_row(r) | {"split": r["split"], "value": r["hparams"][key]} for r in pool.run(jobs)]
    return result


def run_row(run: dict) -> dict:
    keys = ("method", "seed", "accuracy", "macro_f1", "hparams", "train_seconds")
    return {k: run[k] for k in keys}


def auto_compare(prepared: PreparedDataset, result: dict, seeds: list[int], pool: Pool, space: SearchSpace) -> dict:
    """Issue #7: `--auto_hparams` (successive halving, short budgets) against the full validation search.

    Both search the same (S, β) grid around KD's learning rate and τ; the full search trains every candidate for
    the whole budget. Reports each choice, its full-budget validation accuracy, its test accuracy over the seeds,
    and the training epochs each search spent."""
    from hf_lelp.training.autotune import successive_halving

    from .students import STUDENT_DEFAULTS

    folder, seed = prepared.folder, result["selection"]["seed"]
    full_trials = [t for t in result["selection"]["trials"] if t["method"] == PAPER_METHOD]
    full_choice = select([{**t, "split": "validation"} for t in full_trials])["hparams"]
    anchor = {k: v for k, v in full_choice.items() if k not in AUTO_KNOBS}
    full_epochs = STUDENT_DEFAULTS["num_train_epochs"]
    epochs = full_epochs / 8  # round one: 1/8 of the full budget; round two: 1/4
    # The full search's (S, β) candidates, in its order.
    grid = space.grid(PAPER_METHOD, full_choice)
    candidates = list({tuple(h[k] for k in AUTO_KNOBS): {k: h[k] for k in AUTO_KNOBS} for h in grid}.values())

    def evaluate(candidate: dict, budget: float) -> dict:
        hparams = {**anchor, **candidate, "num_train_epochs": budget}
        row = pool.run([(folder, PAPER_METHOD, hparams, seed, "validation")])[0]
        return {"accuracy": row["accuracy"], "macro_f1": row["macro_f1"]}

    start = time.time()
    auto = successive_halving(candidates, evaluate, epochs, keep=3)
    auto_seconds = time.time() - start
    auto_hparams = {**anchor, **auto.chosen}

    def full_budget_validation(hparams: dict) -> float | None:
        return next((t["accuracy"] for t in full_trials if t["hparams"] == hparams), None)

    def test_runs(hparams: dict) -> list[dict]:
        existing = [r for r in result["runs"] if r["method"] == PAPER_METHOD and r["hparams"] == hparams]
        if existing:
            return existing
        return [run_row(r) for r in pool.run([(folder, PAPER_METHOD, hparams, s, "test") for s in seeds])]

    return {
        "auto_choice": auto.chosen,
        "full_search_choice": {k: full_choice[k] for k in AUTO_KNOBS},
        "auto_validation_at_full_budget": full_budget_validation(auto_hparams),
        "full_search_best_validation": full_budget_validation(full_choice),
        "auto_test": test_runs(auto_hparams),
        "full_search_test": test_runs(full_choice),
        "auto_epochs_spent": sum(row["epochs"] for row in auto.table),
        "full_search_epochs_spent": len(full_trials) * full_epochs,
        "auto_seconds": auto_seconds,
        "table": auto.table,
    }
