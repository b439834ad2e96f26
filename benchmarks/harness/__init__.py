"""The benchmark behind `recipes/benchmark.py`: prepare a dataset once (splits, teacher, cache, frozen student
features), train students of every method over seeds with hyperparameters chosen on validation, and report."""
