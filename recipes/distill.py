"""Distil a teacher into a student with LELP (or KD / CE): cache → fit → train → evaluate → export → card.

    python recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml [--flag value ...]
    accelerate launch recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml --bf16 true

Every TrainingArguments flag works (YAML keys or CLI flags; CLI flags override the file), plus the LELP options of
LELPConfig and the data/model options of hf_lelp.cli. The teacher runs once (when its cache is missing) and never
while the student trains.
"""

from __future__ import annotations

import json

from hf_lelp.cli import DataArguments, ModelArguments, parse_with_config, setup_logging
from hf_lelp.config import LELPConfig
from hf_lelp.errors import run_cli
from hf_lelp.workflow import run_distillation


def main(argv: list[str] | None = None) -> dict:
    data_args, model_args, args = parse_with_config((DataArguments, ModelArguments, LELPConfig), argv)
    setup_logging(args.should_log)
    results = run_distillation(data_args, model_args, args)
    if args.should_save:
        print(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    run_cli(main)
