"""Print the teacher / student table of a demo folder (reads the results files the recipes wrote).

    python recipes/summarize.py [runs/demo] [--split test]

The same job as `hf-lelp summarize`.
"""

from __future__ import annotations

from hf_lelp.base.errors import run_cli
from hf_lelp.commands import summarize as main

if __name__ == "__main__":
    run_cli(main)
