"""The transformer track of the strong-teacher study: all-MiniLM-L6-v2 truncated to 2 layers, fine-tuned end to
end by the recipe's own job (`run_distillation`) from the transfer set's cache (the teacher never runs).

Hyperparameters are chosen on validation at the first (smallest) size with a budgeted grid (ours; a run takes
minutes on the 2-core CPU): CE and KD their learning rate (KD's τ fixed at 4, the MLP track's validation choice on
Rotten Tomatoes), LELP (S, β) from KD's choice. The ablations (random, pca) take LELP's (S, β): they differ from
LELP only in the directions, compared at equal S and β. Larger sizes reuse these choices, and the paper's C·S
head runs with LELP's. Every finished run is
appended to a progress file, so an interrupted stage resumes run by run; the size's JSON is written at its end."""

from __future__ import annotations

import json
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

from hf_lelp.base.io_utils import write_json_atomic

from .curve import teacher_choice
from .machine import machine_info
from .prepare import PreparedDataset
from .search import PAPER_METHOD, select
from .student_job import distill_student, student_row

logger = logging.getLogger(__name__)
STUDENT = "all-MiniLM-L6-v2"
STUDENT_LAYERS = 2
# Fixed for every method (ours): the demo config's batch and warm-up; epochs as the demo's.
FIXED = {"num_train_epochs": 4, "per_device_train_batch_size": 32}
GRID = {
    "ce": [{"learning_rate": lr} for lr in (1e-4, 3e-4, 1e-3)],
    "kd": [{"learning_rate": lr, "temperature": 4.0} for lr in (1e-4, 3e-4, 1e-3)],
}
SUBCLASS_GRID = [{"num_subclasses": s, "subclass_temperature": b} for s, b in ((2, 1.0), (2, 2.0), (4, 1.0))]
FLAT = {"subclass_head": "flat"}
SMOKE_GRID = {"ce": [{"learning_rate": 3e-4}], "kd": [{"learning_rate": 3e-4, "temperature": 1.0}]}
SMOKE_SUBCLASS_GRID = [{"num_subclasses": 2, "subclass_temperature": 1.0}]


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)
    logging.basicConfig(level=logging.WARNING)


def _job(folder: str, method: str, hparams: dict, seed: int, split: str) -> dict:
    """One student trained by run_distillation; metrics of its reloaded export on `split`."""
    from hf_lelp.training.arguments import DataArguments, ModelArguments

    prepared = PreparedDataset.load(folder)
    data_args = DataArguments(
        train_file=os.path.join(folder, "data", "train.jsonl"),
        **{f"{split}_file": os.path.join(folder, "data", f"{split}.jsonl")},
        class_names=prepared.label_names,
        max_length=prepared.options["max_length"],
        eval_split=split,
    )
    model_args = ModelArguments(
        teacher=os.path.join(os.path.dirname(folder), "teacher"),
        student=STUDENT,
        student_num_layers=STUDENT_LAYERS,
        cache_dir=os.path.join(folder, "teacher_cache"),
    )
    results = distill_student(data_args, model_args, method, seed, hparams, use_cpu=True, **FIXED)
    return student_row(method, seed, split, hparams, results)


class Runs:
    """Finished runs of one size, kept in a progress file; `run` computes only what is missing."""

    def __init__(self, path: str, workers: int, job=_job):
        self.path, self.rows, self.job = path, [], job  # job(folder, method, hparams, seed, split) -> row
        if os.path.isfile(path):
            with open(path, encoding="utf-8") as handle:
                self.rows = json.load(handle)
        self.executor = ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker)

    @staticmethod
    def key(folder, method, hparams, seed, split) -> str:
        return json.dumps([method, hparams, seed, split], sort_keys=True)

    def run(self, jobs: list[tuple]) -> list[dict]:
        done = {self.key(None, r["method"], r["hparams"], r["seed"], r["split"]): r for r in self.rows}
        futures = {self.key(*job): self.executor.submit(self.job, *job) for job in jobs if self.key(*job) not in done}
        for key, future in futures.items():
            done[key] = future.result()
            self.rows.append(done[key])
            write_json_atomic(self.path, self.rows)
            logger.info("finished %s", done[key])
        return [done[self.key(*job)] for job in jobs]

    def close(self) -> None:
        self.executor.shutdown()


def choose(
    runs: Runs, folder: str, methods: list[str], seed: int, smoke: bool = False
) -> tuple[dict[str, dict], list[dict]]:
    """Validation choices: CE and KD from their grids, LELP (S, β) from KD's choice; the other pseudo-subclass
    methods take LELP's (S, β)."""
    grid, subclass_grid = (SMOKE_GRID, SMOKE_SUBCLASS_GRID) if smoke else (GRID, SUBCLASS_GRID)
    chosen, trials = {}, []
    first = [m for m in ("ce", "kd") if m in methods or m == "kd"]
    rows = runs.run([(folder, m, h, seed, "validation") for m in first for h in grid[m]])
    trials += rows
    for m in first:
        chosen[m] = select([r for r in rows if r["method"] == m])["hparams"]
    rows = runs.run([(folder, PAPER_METHOD, {**chosen["kd"], **h}, seed, "validation") for h in subclass_grid])
    trials += rows
    chosen[PAPER_METHOD] = select(rows)["hparams"]
    for m in methods:
        chosen.setdefault(m, chosen[PAPER_METHOD])  # random, pca: LELP's (S, β), not searched on their own
    return chosen, trials


def with_requested_methods(chosen: dict[str, dict], methods: list[str], chosen_path: str) -> dict[str, dict]:
    """The choices of an earlier search, completed for methods asked for since: the pseudo-subclass ablations take
    LELP's (S, β) as in `choose`; a method with a search of its own that did not run is refused, not skipped."""
    missing = [m for m in methods if m not in chosen and m in GRID]
    if missing:
        raise ValueError(
            f"{chosen_path} was chosen without {', '.join(missing)}: its learning rate was never searched. Delete "
            "that file (and the size's .json) to search again with every method, or drop the method."
        )
    return {**{m: chosen[PAPER_METHOD] for m in methods}, **chosen}


def _finished(stem: str, methods: list[str]) -> dict | None:
    """None when the size's JSON holds every requested method; else the earlier JSON ({} if none), so that a call
    asking for more methods computes only the missing runs (the progress file keeps the others)."""
    if not os.path.isfile(f"{stem}.json"):
        return {}
    with open(f"{stem}.json", encoding="utf-8") as handle:
        earlier = json.load(handle)
    return None if set(methods) <= {r["method"] for r in earlier["runs"]} else earlier


def transformer_track(transfer_sets: dict[int, PreparedDataset], args, command: str) -> None:
    sizes = sorted(min(size, max(transfer_sets)) for size in args.sizes)
    chosen_path = os.path.join(
        args.results_dir, f"{args.dataset}_{os.path.basename(args.teacher)}_transformer_hparams.json"
    )
    chosen = None
    if os.path.isfile(chosen_path):  # the search already ran (at the first size of an earlier call)
        with open(chosen_path, encoding="utf-8") as handle:
            chosen = json.load(handle)["chosen"]
    for size in sizes:
        prepared = transfer_sets[size]
        stem = os.path.join(args.results_dir, f"{args.dataset}_{os.path.basename(args.teacher)}_transformer_n{size}")
        earlier = _finished(stem, args.methods)
        if earlier is None:
            continue
        start = time.time()
        runs = Runs(f"{stem}.progress.json", args.workers)
        try:
            trials = []
            if chosen is None:
                chosen, trials = choose(runs, prepared.folder, args.methods, args.seeds[0], args.search == "smoke")
                write_json_atomic(chosen_path, {"chosen_at_size": size, "chosen": chosen})
            chosen = with_requested_methods(chosen, args.methods, chosen_path)
            jobs = [(prepared.folder, m, chosen[m], s, "test") for m in args.methods for s in args.seeds]
            if PAPER_METHOD in chosen:
                jobs += [
                    (prepared.folder, PAPER_METHOD, {**chosen[PAPER_METHOD], **FLAT}, s, "test") for s in args.seeds
                ]
            rows = runs.run(jobs)
            trials = trials or [r for r in runs.rows if r["split"] == "validation"]  # a resumed size
        finally:
            runs.close()
        result = {
            "dataset": args.dataset,
            "track": "transformer_student",
            "transfer_size": size,
            "num_classes": len(prepared.label_names),
            "split_sizes": prepared.split_sizes,
            "teacher": {
                "model": f"{args.teacher} fine-tuned",
                "accuracy": prepared.teacher_accuracy,
                "macro_f1": prepared.teacher_macro_f1,
            },
            "teacher_choice": teacher_choice(prepared),
            "student": {"model": f"{STUDENT} truncated to {STUDENT_LAYERS} layers, fine-tuned end to end"},
            "fixed": FIXED,
            "search": {
                "grids": SMOKE_GRID if args.search == "smoke" else GRID,
                "subclass_grid": SMOKE_SUBCLASS_GRID if args.search == "smoke" else SUBCLASS_GRID,
                "searched_at_size": sizes[0],
                "seed": args.seeds[0],
            },
            "chosen": chosen,
            "runs": [r for r in rows if r.get("hparams", {}).get("subclass_head") != "flat"],
            "paper_head_runs": [r for r in rows if r.get("hparams", {}).get("subclass_head") == "flat"],
            "selection": {"split": "validation", "trials": trials},
            "command": command,
            "machine": {**machine_info(), "student_processes": args.workers, "threads_per_student": 1},
            # a size rerun for more methods adds its time to the earlier call's
            "wall_seconds": earlier.get("wall_seconds", 0.0) + time.time() - start,
        }
        write_json_atomic(f"{stem}.json", result)
