"""Write the pseudo-subclass explorer (a static HTML report) for a teacher cache.

    python recipes/explore.py --cache_dir runs/demo/cache --dataset rotten_tomatoes --max_train_examples 4000 \
        --num_subclasses 4 --output_dir runs/demo/explore
    python recipes/explore.py --cache_dir cache --train_file train.csv --text_column review --label_column stars \
        --projections cache/projections-S2-label-null-rot-seed0.safetensors --output_dir explore

The texts are loaded exactly as the teacher pass loaded them (same dataset, --max_train_examples and
--subset_seed), and checked against the cache's dataset fingerprint. Fine labels (for the agreement scores) come
from --fine_label_column of the train split; a `fine_label` column is used when present. The same job as
`hf-lelp explore`.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before hf_lelp imports the Hub libraries

from hf_lelp.base.errors import run_cli  # noqa: E402
from hf_lelp.explore_command import explore  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    return explore(argv, prog="recipes/explore.py")


if __name__ == "__main__":
    run_cli(main)
