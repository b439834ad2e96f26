"""The MLP track of the strong-teacher study at every transfer size: the benchmark's validation search and test
seeds (runner.benchmark_dataset), then the paper's C·S head (`subclass_head="flat"`) searched over LELP's own
(S, β) grid from KD's choice, so that the two heads are compared on equal terms. One JSON per size, written when
the size is finished: a rerun skips finished sizes."""

from __future__ import annotations

import json
import logging
import os

from hf_lelp.base.io_utils import write_json_atomic

from .prepare import PreparedDataset
from .runner import Pool, benchmark_dataset, run_row
from .search import PAPER_METHOD, SearchSpace, select

logger = logging.getLogger(__name__)
FLAT = {"subclass_head": "flat"}
# The curve's grid (ours, budgeted: one search per size and teacher): the benchmark's learning rates, τ ∈ {2, 4}
# (the MLP benchmark chose 4 on Rotten Tomatoes) and (S, β) ∈ {2, 4} × {1, 2}.
CURVE_VALUES = {"temperature": (2.0, 4.0), "num_subclasses": (2, 4), "subclass_temperature": (1.0, 2.0)}


def result_path(results_dir: str, dataset: str, teacher: str, track: str, size: int) -> str:
    return os.path.join(results_dir, f"{dataset}_{os.path.basename(teacher)}_{track}_n{size}.json")


def paper_head(prepared: PreparedDataset, result: dict, seeds: list[int], pool: Pool, space: SearchSpace) -> dict:
    """LELP with the paper's head: (S, β) chosen on validation from KD's (learning rate, τ), then the seeds."""
    trials = [t for t in result["selection"]["trials"] if t["method"] == "kd"]
    kd_choice = select([{**t, "split": "validation"} for t in trials])["hparams"]
    grid = [{**h, **FLAT} for h in space.grid(PAPER_METHOD, kd_choice)]
    folder, seed = prepared.folder, result["selection"]["seed"]
    search = pool.run([(folder, PAPER_METHOD, h, seed, "validation") for h in grid])
    chosen = select(search)["hparams"]
    runs = pool.run([(folder, PAPER_METHOD, chosen, s, "test") for s in seeds])
    return {
        "method": f"{PAPER_METHOD} (paper's C·S head)",
        "chosen": chosen,
        "runs": [run_row(r) for r in runs],
        "selection": [run_row(t) | {"split": t["split"]} for t in search],
    }


def mlp_curve(transfer_sets: dict[int, PreparedDataset], args, command: str) -> None:
    space = SearchSpace.smoke() if args.search == "smoke" else SearchSpace(CURVE_VALUES)
    pool = Pool(args.workers)
    try:
        for size in args.sizes:
            size = min(size, max(transfer_sets))
            prepared = transfer_sets[size]
            path = result_path(args.results_dir, args.dataset, args.teacher, "mlp", size)
            result = None
            if os.path.isfile(path):
                with open(path, encoding="utf-8") as handle:
                    result = json.load(handle)
                if "paper_head" in result:
                    logger.info("%s exists: size %d done", path, size)
                    continue
            if result is None:
                result = benchmark_dataset(prepared, args.methods, args.seeds, pool, False, command, path, space=space)
            result["paper_head"] = paper_head(prepared, result, args.seeds, pool, space)
            result["transfer_size"] = size
            result["teacher_choice"] = teacher_choice(prepared)
            write_json_atomic(path, result)
    finally:
        pool.close()


def teacher_choice(prepared: PreparedDataset) -> dict:
    teacher_dir = os.path.join(os.path.dirname(prepared.folder), "teacher", "teacher_choice.json")
    with open(teacher_dir, encoding="utf-8") as handle:
        return json.load(handle)
