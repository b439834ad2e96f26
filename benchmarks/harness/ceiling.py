"""Issue #22, the ceiling: how much can any pseudo-subclass method add, and how much of it does LELP take?

The regime where headroom is likeliest: a small BERT-style student trained *from scratch* (`--student_config`,
the paper's CIFAR-100 ceiling came from such students), few labelled rows, and a larger transfer set. For each
labelled size n of a dataset with fine labels (20 Newsgroups):
    - the teacher (all-MiniLM-L6-v2, fine-tuned) learns from the first n rows of a seeded shuffle of train, its
      learning rate and epochs chosen on validation (benchmarks.harness.strong.choose_teacher);
    - the transfer set is every train row (the cache covers them all; the teacher runs once); their labels are
      unused (`--unlabelled_transfer` semantics): KD and LELP use no label term (α = 0, the paper's), and the
      pseudo-subclass methods group by the teacher's predictions, never by the labels;
    - CE learns from the n labelled rows only; the oracle takes the true fine labels of every transfer row as its
      subclasses (an upper bound: it sees what no method can);
    - hyperparameters are chosen on validation with seed 0 at each size (a budgeted grid, ours), then 3 seeds on test.

Layout: runs/ceiling/<dataset>/labelled<n>/ (strong.py's layout: data/, teacher_search/, teacher/, full/teacher_cache).
Every finished run is appended to a progress file beside the result, so an interrupted stage resumes run by run.
"""

from __future__ import annotations

import json
import logging
import os
import time

from hf_lelp.base.io_utils import write_json_atomic
from hf_lelp.methods.registry import get_method

from .machine import machine_info
from .search import select
from .strong import StrongOptions, build_full_cache, choose_teacher, write_data
from .strong_transformer import Runs

logger = logging.getLogger(__name__)

TEACHER = "all-MiniLM-L6-v2"
STUDENT_CONFIG = "tiny"  # 2 layers, hidden 128, 2 heads: the smallest BERT miniature
# Ours, for every method (the CPU's budget): epochs and batch fixed, the learning rate searched.
FIXED = {"num_train_epochs": 5, "per_device_train_batch_size": 32}
GRID = {
    "ce": [{"learning_rate": lr} for lr in (1e-3, 3e-3)],
    "kd": [{"learning_rate": lr, "temperature": 4.0} for lr in (1e-3, 3e-3)],
}
SUBCLASS_GRID = [{"num_subclasses": s, "subclass_temperature": 1.0} for s in (2, 4)]
SMOKE = {"ce": GRID["ce"][:1], "kd": GRID["kd"][:1]}
ALL = 0  # labelled size 0: every train row is labelled (the teacher learns from all of them)


def folder_for(work_dir: str, dataset: str, labelled: int) -> str:
    return os.path.join(work_dir, dataset, f"labelled{labelled or 'all'}")


def options_for(labelled: int, args) -> StrongOptions:
    few = bool(labelled) and labelled <= 1000
    return StrongOptions(
        teacher_model=TEACHER,
        teacher_rows=labelled or 10**9,
        # Ours: a teacher on a few hundred rows needs more passes than one on thousands, and on every row one
        # learning rate (the larger of the two searched elsewhere) keeps the CPU's budget.
        teacher_max_epochs=5 if few else 3,
        teacher_learning_rates=() if few else (1e-4,),
        validation=args.validation,
        test=args.test,
        max_train=args.max_train,
        max_length=args.max_length,
        transfer_sizes=(),
    )


def prepare(dataset: str, labelled: int, args) -> dict:
    """Data, the teacher on the labelled rows, its cache over every train row; returns the folder's facts."""
    folder = folder_for(args.work_dir, dataset, labelled)
    options = options_for(labelled, args)
    names = write_data(dataset, folder, options)
    choice = choose_teacher(folder, names, options)
    cache = build_full_cache(folder, names, options)
    facts = {
        "folder": folder,
        "label_names": names,
        "max_length": options.max_length,
        "labelled_rows": min(options.teacher_rows, cache.num_examples),
        "transfer_rows": cache.num_examples,
        "teacher_choice": choice,
    }
    write_json_atomic(os.path.join(folder, "ceiling.json"), facts)
    return facts


def _job(folder: str, method: str, hparams: dict, seed: int, split: str) -> dict:
    """One from-scratch student: CE on the labelled rows, every teacher method on the whole transfer set."""
    from hf_lelp.training.arguments import DataArguments, ModelArguments

    from .student_job import distill_student, student_row

    with open(os.path.join(folder, "ceiling.json"), encoding="utf-8") as handle:
        facts = json.load(handle)
    data = os.path.join(folder, "data")
    spec = get_method(method)
    data_args = DataArguments(
        train_file=os.path.join(data, "train.jsonl" if spec.uses_teacher else "teacher.jsonl"),
        **{f"{split}_file": os.path.join(data, f"{split}.jsonl")},
        class_names=facts["label_names"],
        max_length=facts["max_length"],
        eval_split=split,
        fine_label_column="fine_label" if method == "oracle" else None,
    )
    model_args = ModelArguments(
        teacher=os.path.join(folder, "teacher"),
        student_config=STUDENT_CONFIG,
        cache_dir=os.path.join(folder, "full", "teacher_cache"),
    )
    settings = dict(FIXED)
    if spec.subclass_source is not None:
        settings["grouping"] = "prediction"  # the transfer rows' labels are unused
    results = distill_student(data_args, model_args, method, seed, hparams, use_cpu=True, **settings)
    return student_row(method, seed, split, hparams, results)


def choose(runs: Runs, folder: str, methods: list[str], seed: int, smoke: bool) -> tuple[dict, list[dict]]:
    """CE and KD their learning rate; LELP (S, β) from KD's; the other subclass methods take LELP's S (the oracle's S
    is its number of fine labels: it takes the rest)."""
    grid = SMOKE if smoke else GRID
    subclass_grid = SUBCLASS_GRID[:1] if smoke else SUBCLASS_GRID
    chosen, trials = {}, []
    rows = runs.run([(folder, m, h, seed, "validation") for m in ("ce", "kd") for h in grid[m]])
    trials += rows
    for m in ("ce", "kd"):
        chosen[m] = select([r for r in rows if r["method"] == m])["hparams"]
    if any(get_method(m).subclass_source is not None for m in methods):
        rows = runs.run([(folder, "lelp", {**chosen["kd"], **h}, seed, "validation") for h in subclass_grid])
        trials += rows
        chosen["lelp"] = select(rows)["hparams"]
    for m in methods:
        chosen.setdefault(m, chosen["lelp"])
    return chosen, trials


def teacher_facts(choice: dict, labelled_rows: int) -> dict:
    """The teacher's part of a point's result. The choice records the row limit it was given (10**9 for "all"), so
    the rows it learnt from are the point's labelled rows."""
    return {
        "model": f"{TEACHER} fine-tuned on the labelled rows",
        "accuracy": choice["test_accuracy"],
        "macro_f1": choice["test_macro_f1"],
        "choice": {**choice, "train_examples": labelled_rows},
    }


def ceiling_point(dataset: str, labelled: int, args, command: str) -> dict:
    """Every method × seed on test at one labelled size (after its validation search); written as JSON."""
    facts = prepare(dataset, labelled, args)
    folder = facts["folder"]
    stem = os.path.join(args.results_dir, f"{dataset}_scratch_labelled{labelled or 'all'}")
    start = time.time()
    runs = Runs(f"{stem}.progress.json", args.workers, job=_job)
    try:
        chosen, trials = choose(runs, folder, args.methods, args.seeds[0], args.search == "smoke")
        rows = runs.run([(folder, m, chosen[m], s, "test") for m in args.methods for s in args.seeds])
    finally:
        runs.close()
    earlier = {}
    if os.path.isfile(f"{stem}.json"):
        with open(f"{stem}.json", encoding="utf-8") as handle:
            earlier = json.load(handle)
    result = {
        "dataset": dataset,
        "track": "scratch_student",
        "labelled_rows": facts["labelled_rows"],
        "transfer_rows": facts["transfer_rows"],
        "num_classes": len(facts["label_names"]),
        "teacher": teacher_facts(facts["teacher_choice"], facts["labelled_rows"]),
        "student": {"student_config": STUDENT_CONFIG, "trained": "from scratch"},
        "fixed": FIXED,
        "search": {"grids": GRID, "subclass_grid": SUBCLASS_GRID, "seed": args.seeds[0], "mode": args.search},
        "chosen": chosen,
        "runs": rows,
        "selection": {"split": "validation", "trials": trials},
        "command": command,
        "machine": {**machine_info(), "student_processes": args.workers, "threads_per_student": 1},
        "wall_seconds": earlier.get("wall_seconds", 0.0) + time.time() - start,
    }
    write_json_atomic(f"{stem}.json", result)
    return result


WEIGHTS = (1.0, 0.25, 0.0625)  # λ, the within-class term's weight: the paper's 1, then 1/τ (τ = 4) and 1/τ²


def weight_point(dataset: str, labelled: int, args, command: str) -> dict:
    """λ (`--within_class_weight`) on validation for LELP and the oracle at a finished point, each at its chosen
    hyperparameters (seed 0), then the chosen λ on test over the seeds; written beside the point's JSON."""
    stem = os.path.join(args.results_dir, f"{dataset}_scratch_labelled{labelled or 'all'}")
    with open(f"{stem}.json", encoding="utf-8") as handle:
        point = json.load(handle)
    folder = folder_for(args.work_dir, dataset, labelled)
    start = time.time()
    runs = Runs(f"{stem}_weight.progress.json", args.workers, job=_job)
    try:
        methods = [m for m in ("lelp", "oracle") if m in point["chosen"]]
        grid = [(m, {**point["chosen"][m], "within_class_weight": w}) for m in methods for w in WEIGHTS]
        trials = runs.run([(folder, m, h, args.seeds[0], "validation") for m, h in grid])
        chosen = {m: select([t for t in trials if t["method"] == m])["hparams"] for m in methods}
        rows = runs.run([(folder, m, chosen[m], s, "test") for m in methods for s in args.seeds])
    finally:
        runs.close()
    result = {
        "dataset": dataset,
        "labelled_rows": point["labelled_rows"],
        "weights": WEIGHTS,
        "chosen": chosen,
        "runs": rows,
        "kd_runs": [r for r in point["runs"] if r["method"] == "kd"],
        "selection": {"split": "validation", "seed": args.seeds[0], "trials": trials},
        "command": command,
        "wall_seconds": time.time() - start,
    }
    write_json_atomic(f"{stem}_weight.json", result)
    return result
