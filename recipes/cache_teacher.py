"""The teacher pass alone: run the teacher once over the transfer set and store its cache.

    python recipes/cache_teacher.py recipes/configs/distill_rotten_tomatoes.yaml
    accelerate launch --num_processes 2 recipes/cache_teacher.py recipes/configs/distill_rotten_tomatoes.yaml
    hf-lelp cache recipes/configs/distill_rotten_tomatoes.yaml   # the same job, installed

Data-parallel: processes take disjoint shards of rows, so every example id is cached exactly once. Interrupted,
it resumes from its finished (checksummed) shards. Takes the same config file as distill.py and ignores the keys
that only training needs.
"""

from __future__ import annotations

from hf_lelp.base.errors import run_cli
from hf_lelp.commands import cache_teacher as main

if __name__ == "__main__":
    run_cli(main)
