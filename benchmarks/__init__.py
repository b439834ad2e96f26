"""The benchmark scripts and their harness (`benchmarks.harness`); a regular package, so that an installed
distribution shipping a top-level `benchmarks` cannot shadow it. Not part of the `hf_lelp` wheel."""
