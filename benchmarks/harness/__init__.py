"""The benchmark behind `recipes/benchmark.py`: prepare a dataset once (splits, teacher, cache, frozen student
features), train students of every method over seeds with hyperparameters chosen on validation, and report.

It lives beside the scripts, not in `hf_lelp`: the installed package knows nothing of the benchmark. Scripts run
from a checkout put the repository root on `sys.path` and import `benchmarks.harness`."""
