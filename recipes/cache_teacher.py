"""The teacher pass alone: run the teacher once over the transfer set and store its cache.

    python recipes/cache_teacher.py recipes/configs/distill_rotten_tomatoes.yaml
    accelerate launch --num_processes 2 recipes/cache_teacher.py recipes/configs/distill_rotten_tomatoes.yaml

Data-parallel: processes take disjoint shards of rows, so every example id is cached exactly once. Interrupted,
it resumes from its finished (checksummed) shards. Takes the same config file as distill.py and ignores the keys
that only training needs.
"""

from __future__ import annotations

import json
import sys

from hf_lelp.cli import DataArguments, ModelArguments, parse_with_config, setup_logging
from hf_lelp.config import LELPConfig
from hf_lelp.errors import run_cli
from hf_lelp.workflow import ensure_teacher_cache, load_data


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    data_args, model_args, args = parse_with_config((DataArguments, ModelArguments, LELPConfig), argv)
    setup_logging(args.should_log)
    cache = ensure_teacher_cache(load_data(data_args), data_args, model_args, args)
    summary = {
        "cache_dir": cache.path,
        "num_examples": cache.num_examples,
        "hidden_size": cache.hidden_size,
        "num_labels": cache.num_labels,
        "head_module": cache.meta["head_module"],
    }
    if args.should_save:
        print(json.dumps(summary, indent=2))
    return summary


if __name__ == "__main__":
    run_cli(main)
