"""Distil a teacher into a student with LELP (or KD / CE): cache → fit → train → evaluate → export → card.

    python recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml [--flag value ...]
    accelerate launch recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml --bf16 true
    hf-lelp distill recipes/configs/distill_rotten_tomatoes.yaml [--flag value ...]   # the same job, installed

Every TrainingArguments flag works (YAML keys or CLI flags; CLI flags override the file), plus the LELP options of
LELPConfig and the data/model options of DataArguments and ModelArguments. The teacher runs once (when its cache is
missing) and never while the student trains.
"""

from __future__ import annotations

from hf_lelp.base.errors import run_cli
from hf_lelp.commands import distill as main

if __name__ == "__main__":
    run_cli(main)
