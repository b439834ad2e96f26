#!/usr/bin/env bash
# Issue #14 part 5: the prepared GPU run (one H100/H200, about 10 minutes, no network). See benchmarks/gpu/README.md.
#
#   bash benchmarks/gpu/run.sh          # on the device: run(command="bash benchmarks/gpu/run.sh",
#                                       #   carry=["benchmarks/gpu/carry"], timeout_s=600)
#
# Steps, in this order (each under its own `timeout`, inside one overall budget; a failing step does not stop the
# next; the track runs first because it is the result the GPU is borrowed for):
#   setup_wheels        the carried wheels (datasets, evaluate, dill, multiprocess, fsspec) into a scratch site dir
#   setup_assets        the carried all-MiniLM-L6-v2 (fp16-packed, upcast back to fp32) and Rotten Tomatoes file
#                       as the stand-in packages that hf-lelp's offline short names look up
#   env                 versions and the GPU (env.json)
#   transformer_track   (2) teacher (mpnet when present, else MiniLM-L6) fine-tuned in bf16, its learning rate
#                           chosen on validation; students ce/kd/lelp x 3 seeds, full train split, bf16
#   perf                (3) benchmarks/perf.py --only speed (fp32 and bf16 on the GPU), and its
#                           cached_vs_online_kd_mpnet group when step (2) had the mpnet teacher
#   dist_prepare        (1) the tiny corpus of tests/conftest.py and its tiny teacher (recipes/train_teacher.py)
#   dist_fsdp           (1) accelerate launch under recipes/accelerate_configs/fsdp.yaml: distil with checkpoints,
#                           resume from checkpoint-4, reload the export with pipeline("text-classification")
#   deepspeed_install   (1) deepspeed from the carried sdist, when carried (else "skipped: not installed")
#   dist_deepspeed      (1) the same under recipes/accelerate_configs/deepspeed_zero2.yaml
#
# Writes only under OUT_DIR (= $OUT on the device, else benchmarks/results/gpu) and a scratch WORK_DIR (mktemp):
#   summary.json  env.json  distributed.json  transformer_track.json  perf.json  PERF.md  logs.tar.gz
# Environment knobs: GPU_BUDGET_S (total seconds, default 570), GPU_WORK_DIR, PYTHON (default python3),
# GPU_DRY_RUN=1 (log the commands, run nothing: what tests/test_gpu_script.py runs), GPU_TEACHER (a teacher
# checkpoint folder or short name for step 2; default: all-mpnet-base-v2 when its parts are installed).
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 2
REPO_DIR="$(pwd)"
PY="${PYTHON:-python3}"
STEPS="benchmarks/gpu/steps.py"
CARRY_DIR="benchmarks/gpu/carry"
BUDGET_S="${GPU_BUDGET_S:-570}"
DRY_RUN="${GPU_DRY_RUN:-0}"
START_S="$(date +%s)"
DEADLINE_S=$((START_S + BUDGET_S))

OUT_DIR="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT_DIR" || exit 2
OUT_DIR="$(cd "$OUT_DIR" && pwd)"
WORK_DIR="${GPU_WORK_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/hf_lelp_gpu.XXXXXX")}"
mkdir -p "$WORK_DIR/logs" "$WORK_DIR/status" "$WORK_DIR/site" "$WORK_DIR/home" "$WORK_DIR/tmp" || exit 2
WORK_DIR="$(cd "$WORK_DIR" && pwd)"
LOG_DIR="$WORK_DIR/logs"
STEPS_FILE="$WORK_DIR/steps.jsonl"
: >"$STEPS_FILE"

# Offline, and every cache, config and temporary file under WORK_DIR (not ~, not the checkout).
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export PYTHONUNBUFFERED=1 PYTHONPYCACHEPREFIX="$WORK_DIR/pycache"
export HOME="$WORK_DIR/home" XDG_CACHE_HOME="$WORK_DIR/home/.cache" XDG_CONFIG_HOME="$WORK_DIR/home/.config"
export TMPDIR="$WORK_DIR/tmp" MPLCONFIGDIR="$WORK_DIR/home/mpl" TRITON_CACHE_DIR="$WORK_DIR/home/triton"
export HF_HOME="$WORK_DIR/hf_home" HF_LELP_CACHE="$WORK_DIR/hf_lelp_cache"
export HF_MODULES_CACHE="$WORK_DIR/hf_home/modules" HF_METRICS_CACHE="$WORK_DIR/hf_home/metrics"
export PYTHONPATH="$WORK_DIR/site:$REPO_DIR${PYTHONPATH:+:$PYTHONPATH}"
export GPU_OUT_DIR="$OUT_DIR" GPU_WORK_DIR="$WORK_DIR" GPU_CARRY_DIR="$REPO_DIR/$CARRY_DIR" GPU_PYTHON="$PY"

log() { echo "[run.sh $(date +%T) +$(($(date +%s) - START_S))s] $*"; }

write_summary() {
    if [[ -f "$REPO_DIR/$STEPS" ]]; then
        "$PY" "$STEPS" summary --work "$WORK_DIR" --out "$OUT_DIR" --budget "$BUDGET_S" --started "$START_S" \
            >>"$LOG_DIR/summary.log" 2>&1 || log "summary failed (see logs/summary.log)"
    fi
    tar -czf "$OUT_DIR/logs.tar.gz" -C "$WORK_DIR" logs status steps.jsonl 2>/dev/null || true
}

# step NAME CAP_SECONDS COMMAND...: runs COMMAND under `timeout` (at most CAP, at most what the budget has left),
# logs to $LOG_DIR/NAME.log, and appends {step, status, rc, wall_seconds, timeout_s} to steps.jsonl. A step may
# set its own status line (e.g. "skipped: not installed") in $GPU_STEP_STATUS_FILE.
step() {
    local name="$1" cap="$2"
    shift 2
    local left=$((DEADLINE_S - $(date +%s) - 10)) limit rc status t0 t1
    limit=$((cap < left ? cap : left))
    export GPU_STEP_STATUS_FILE="$WORK_DIR/status/$name" GPU_STEP_TIMEOUT_S="$limit"
    rm -f "$GPU_STEP_STATUS_FILE"
    if ((limit < 20)); then
        status="skipped: out of time budget"
        rc=0
        t0="$(date +%s.%N)"
        t1="$t0"
    else
        log "step $name (timeout ${limit}s): $*"
        t0="$(date +%s.%N)"
        if [[ "$DRY_RUN" == 1 ]]; then
            echo "DRY RUN: timeout -k 15 $limit $*" >"$LOG_DIR/$name.log"
            echo "dry run: not run" >"$GPU_STEP_STATUS_FILE"
            rc=0
        else
            timeout -k 15 "$limit" "$@" >"$LOG_DIR/$name.log" 2>&1
            rc=$?
        fi
        t1="$(date +%s.%N)"
        if [[ -s "$GPU_STEP_STATUS_FILE" ]]; then
            status="$(head -n 1 "$GPU_STEP_STATUS_FILE" | tr -d '"\\')"
        elif ((rc == 0)); then
            status="ok"
        elif ((rc == 124 || rc == 137)); then
            status="timeout after ${limit}s"
        else
            status="failed (exit $rc)"
        fi
    fi
    printf '{"step": "%s", "status": "%s", "rc": %d, "wall_seconds": %s, "timeout_s": %d}\n' \
        "$name" "$status" "$rc" "$(awk "BEGIN { printf \"%.1f\", $t1 - $t0 }")" "$limit" >>"$STEPS_FILE"
    log "step $name: $status"
    write_summary
    return 0
}

# The carried wheels (pure Python, built for the image's Python 3.12), --no-deps into the scratch site dir.
install_wheels() {
    shopt -s nullglob
    local wheels=("$GPU_CARRY_DIR"/wheels/*.whl)
    if ((${#wheels[@]} == 0)); then
        echo "no wheels in $GPU_CARRY_DIR/wheels: run benchmarks/gpu/fetch_wheels.sh and carry $GPU_CARRY_DIR"
        "$GPU_PYTHON" -c "import datasets, evaluate" && echo "datasets and evaluate already importable" && return 0
        echo "failed: wheels not carried" >"$GPU_STEP_STATUS_FILE"
        return 1
    fi
    "$GPU_PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$GPU_WORK_DIR/site" "${wheels[@]}" || return 1
    "$GPU_PYTHON" -c "import datasets, evaluate, dill, multiprocess; print('datasets', datasets.__version__)"
}

# DeepSpeed is neither in the image nor reachable: built from the carried sdist (no ops compiled ahead, as pip does
# by default) into its own site dir, which only the DeepSpeed step puts on PYTHONPATH.
install_deepspeed() {
    shopt -s nullglob
    if "$GPU_PYTHON" -c "import deepspeed" 2>/dev/null; then
        echo "deepspeed preinstalled"
        return 0
    fi
    local sdists=("$GPU_CARRY_DIR"/deepspeed/deepspeed-*.tar.gz) deps=("$GPU_CARRY_DIR"/deepspeed/*.whl)
    if ((${#sdists[@]} == 0)); then
        echo "skipped: not installed" >"$GPU_STEP_STATUS_FILE"
        return 0
    fi
    mkdir -p "$GPU_WORK_DIR/site_ds"
    if ((${#deps[@]} > 0)); then
        "$GPU_PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$GPU_WORK_DIR/site_ds" "${deps[@]}" || return 1
    fi
    DS_BUILD_OPS=0 PYTHONPATH="$GPU_WORK_DIR/site_ds:$PYTHONPATH" "$GPU_PYTHON" -m pip install -q --no-index \
        --no-deps --no-build-isolation --no-cache-dir --target "$GPU_WORK_DIR/site_ds" "${sdists[0]}" || {
        echo "skipped: not installed (the carried sdist did not build, see the log)" >"$GPU_STEP_STATUS_FILE"
        return 1
    }
    PYTHONPATH="$GPU_WORK_DIR/site_ds:$PYTHONPATH" "$GPU_PYTHON" -c "import deepspeed; print(deepspeed.__version__)"
}

# Without deepspeed importable, `steps.py dist` records "skipped: not installed" for this backend.
run_deepspeed() {
    PYTHONPATH="$GPU_WORK_DIR/site_ds:$PYTHONPATH" \
        "$GPU_PYTHON" "$STEPS" dist --backend deepspeed --work "$GPU_WORK_DIR" --out "$GPU_OUT_DIR"
}
export STEPS
export -f install_wheels install_deepspeed run_deepspeed

log "repo $REPO_DIR, out $OUT_DIR, work $WORK_DIR, python $PY, budget ${BUDGET_S}s, dry run $DRY_RUN"
step setup_wheels 60 bash -c install_wheels
step setup_assets 60 "$PY" "$STEPS" unpack-assets --carry "$GPU_CARRY_DIR" --site "$WORK_DIR/site"
step env 45 "$PY" "$STEPS" env --out "$OUT_DIR"
# (2) The strong-teacher transformer track at size: run first, being the result the GPU is borrowed for.
step transformer_track 240 "$PY" "$STEPS" track --work "$WORK_DIR" --out "$OUT_DIR"
# (3) perf.py's rows on the GPU (after (2): with an mpnet teacher there, its online-KD row too).
step perf 150 "$PY" "$STEPS" perf --work "$WORK_DIR" --out "$OUT_DIR"
# (1) FSDP and DeepSpeed ZeRO-2 through save, resume and export.
step dist_prepare 60 "$PY" "$STEPS" dist-prepare --work "$WORK_DIR"
step dist_fsdp 150 "$PY" "$STEPS" dist --backend fsdp --work "$WORK_DIR" --out "$OUT_DIR"
step deepspeed_install 90 bash -c install_deepspeed
step dist_deepspeed 150 bash -c run_deepspeed
log "done in $(($(date +%s) - START_S))s; results in $OUT_DIR; scratch (checkpoints, caches, logs) in $WORK_DIR"
write_summary
exit 0
