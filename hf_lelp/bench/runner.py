"""Run the benchmark of one prepared dataset: validation search, final seeds on test, S and β sweeps.

Student runs go to a pool of single-threaded worker processes (an MLP student does not use two cores well)."""

from __future__ import annotations

import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict
from multiprocessing import get_context

from ..io_utils import write_json_atomic
from .prepare import PreparedDataset
from .search import SearchSpace, select

logger = logging.getLogger(__name__)
STAGE_ONE = ("ce", "kd")


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)


def _job(folder: str, method: str, hparams: dict, seed: int, split: str) -> dict:
    from .students import run_student

    with tempfile.TemporaryDirectory() as output_dir:
        metrics = run_student(folder, method, hparams, seed, split, output_dir)
    return {"method": method, "seed": seed, "split": split, "hparams": hparams, **metrics}


class Pool:
    def __init__(self, workers: int):
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
    first = [m for m in STAGE_ONE if m in methods or (m == "kd" and set(methods) - set(STAGE_ONE))]
    trials += pool.run([(folder, m, h, selection_seed, "validation") for m in first for h in space.stage_one_grid(m)])
    chosen = {m: select([t for t in trials if t["method"] == m])["hparams"] for m in first}
    later = [m for m in methods if m not in STAGE_ONE]
    if later:
        oracle_ok = prepared.fine_labels("train") is not None
        later = [m for m in later if m != "oracle" or oracle_ok]
        trials += pool.run(
            [
                (folder, m, h, selection_seed, "validation")
                for m in later
                for h in space.stage_two_grid(m, chosen["kd"], unlabelled)
            ]
        )
        chosen.update({m: select([t for t in trials if t["method"] == m])["hparams"] for m in later})
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
        "runs": [_run_row(r) for r in runs],
        "selection": {"split": "validation", "seed": selection_seed, "trials": [_run_row(t) for t in trials]},
        "command": command,
        "prepare_options": prepared.options,
        "search_space": asdict(space),
    }
    if sweeps and "lelp" in chosen:
        result["sweeps"] = sweep(prepared, chosen["lelp"], seeds, pool, space)
    result["wall_seconds"] = time.time() - start
    os.makedirs(os.path.dirname(output_path), exist_ok=True)
    write_json_atomic(output_path, result)
    return result


def sweep(prepared: PreparedDataset, chosen: dict, seeds: list[int], pool: Pool, space: SearchSpace) -> dict:
    """LELP's accuracy against S (β as selected) and against β (S as selected), on validation and test."""
    grids, result = {"num_subclasses": space.s_sweep, "subclass_temperature": space.beta_sweep}, {}
    for key, values in grids.items():
        jobs = [
            (prepared.folder, "lelp", {**chosen, key: value}, seed, split)
            for value in values
            for seed in seeds
            for split in ("validation", "test")
        ]
        result[key] = [_run_row(r) | {"split": r["split"], "value": r["hparams"][key]} for r in pool.run(jobs)]
    return result


def _run_row(run: dict) -> dict:
    keys = ("method", "seed", "accuracy", "macro_f1", "hparams", "train_seconds")
    return {k: run[k] for k in keys}
