#!/usr/bin/env bash
# The device calls of a GPU lease (benchmarks/GPU_RUN.md), run in the repository root there.
#
#   bash benchmarks/gpu_lease.sh stash p0                   # call 1, carry .gpu_carry/model/p0
#   bash benchmarks/gpu_lease.sh stash p1                   # call 2, carry .gpu_carry/model/p1
#                                                           #   (one call per part but the last)
#   bash benchmarks/gpu_lease.sh run SWEEP MINUTES [ARGS]   # last call, carry the last part
#                                                           #   and .whl (the gguf wheel)
#   bash benchmarks/gpu_lease.sh join                       # only join the model, install wheels
#   bash benchmarks/gpu_lease.sh bench [ARGS]               # after `run`, same machine: cells
#                                                           #   one by one, batched, 2 workers
#   bash benchmarks/gpu_lease.sh lease [ARGS]               # last call of the 15-minute plan:
#                                                           #   converged, carriers, overlap, bench
# `stash PART` keeps one part of the split SmolLM2 GGUF file outside the working tree (the
# tree that travels with each call leaves too little room for more than a third of the file);
# `run` joins the stashed parts and the carried one (sha256 checked), installs the carried
# wheels, and runs benchmarks/gpu_run.py
# with --out "$OUT" and the joined model; ARGS go to gpu_run.py. `bench` runs
# benchmarks/bench_batched.py on the joined model (ARGS go to it; a later --model wins).
# `lease` runs the plan's sweeps one after another, each into runs/NAME and packed into
# $OUT/NAME (SHA256SUMS and parts only) as soon as it ends, then `bench` under `timeout`; the
# whole output is also in $OUT/lease.log: 8 files at most, 56 MiB at most. ARGS go to every
# gpu_run.py (a later --model wins); the sweeps, their minutes and the bench's arguments are
# the variables below (the CPU rehearsal swaps in tiny sweeps: tests/collect/test_gpu_lease.py).
# STASH (default /tmp/lawfit_carry) says where the parts and the model go.
set -euo pipefail
STASH=${STASH:-/tmp/lawfit_carry}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
PY=${PYTHON:-python3}
# the plan's call 2 (benchmarks/GPU_RUN.md, "The lease"): minutes of each step
CONVERGED=${CONVERGED:-sweeps/gpu_converged.toml}
CONVERGED_MIN=${CONVERGED_MIN:-4.5}
CARRIERS=${CARRIERS:-sweeps/gpu_carriers.toml}
CARRIERS_MIN=${CARRIERS_MIN:-1.5}
OVERLAP=${OVERLAP:-sweeps/gpu_overlap.toml}
OVERLAP_MIN=${OVERLAP_MIN:-1.25}
# processes sharing the GPU in each sweep step (gpu_run.py --workers): a 135M model's step is
# too short to keep an H200 busy from one process, so several overlap their launch latencies
WORKERS=${WORKERS:-4}
BENCH_SECONDS=${BENCH_SECONDS:-75}  # 0: no bench
BENCH_ARGS=${BENCH_ARGS:---modules mlp_block@20 --length 512 --ranks 1 2 4 8 --methods sft \
--data-seeds 0 1 --max-steps 100 --batch-cells 4 --workers 2}

prepare() {  # join the model's parts once (stashed and carried), install the carried wheels
    if [ ! -f "$STASH/$GGUF" ]; then
        local parts
        parts=$(shopt -s nullglob; echo "$STASH"/p[0-9]* .gpu_carry/model/p[0-9]*)
        # shellcheck disable=SC2086  # the part folders' names have no spaces (pN)
        "$PY" benchmarks/gpu_pack.py join $parts -o "$STASH/$GGUF"
    fi
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$STASH/site" .whl/*.whl
    fi
    if [ -d "$STASH/site" ]; then
        export PYTHONPATH="$STASH/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONUNBUFFERED=1
    # the first model load converts the GGUF file once; the later steps read the conversion
    export COLLECT_MODEL_CACHE=${COLLECT_MODEL_CACHE:-$STASH/models}
}

sweep_step() {  # NAME SWEEP MINUTES FILES MIB [ARGS]: one sweep of `lease`, packed into $OUT/NAME
    local name=$1 sweep=$2 minutes=$3 files=$4 mib=$5
    shift 5
    echo "== $name: $sweep, $minutes min, $(date -u +%T)"
    "$PY" benchmarks/gpu_run.py "$sweep" --minutes "$minutes" --model "$STASH/$GGUF" \
        --work "runs/$name" --out "$OUT/$name" --no-side-files --max-files "$files" \
        --max-mib "$mib" --workers "$WORKERS" "$@" \
        || echo "== $name failed (exit $?); the lease goes on"
}

case "${1:-}" in
stash)
    part=${2:-p0}
    mkdir -p "$STASH"
    cp -r ".gpu_carry/model/$part" "$STASH/"
    (cd "$STASH/$part" && sha256sum -c --ignore-missing SHA256SUMS)
    echo "stashed $(du -sh "$STASH/$part" | cut -f1) in $STASH/$part; make the next call now"
    ;;
join)
    prepare
    echo "model: $STASH/$GGUF"
    ;;
run)
    sweep=${2:?sweep file}
    minutes=${3:?minutes}
    shift 3
    prepare
    "$PY" -c "import gguf; print('gguf', gguf.__file__)"
    "$PY" benchmarks/gpu_run.py "$sweep" --minutes "$minutes" --out "${OUT:?OUT must be set}" \
        --model "$STASH/$GGUF" "$@"
    ;;
bench)
    shift
    prepare
    "$PY" benchmarks/bench_batched.py --model "$STASH/$GGUF" "$@"
    ;;
lease)
    shift
    : "${OUT:?OUT must be set}"
    prepare
    mkdir -p "$OUT"
    {
        "$PY" -c "import gguf; print('gguf', gguf.__file__)"
        sweep_step converged "$CONVERGED" "$CONVERGED_MIN" 3 16 "$@"
        # their merged files are small (132 and 12 MB against 2 GB): half a minute to merge
        # the carrier sweep's LoRA reference cells are converged cells: those done are reused
        sweep_step carriers "$CARRIERS" "$CARRIERS_MIN" 2 12 --no-paper --reserve-minutes 0.5 \
            --reuse-cells runs/converged "$@"
        sweep_step overlap "$OVERLAP" "$OVERLAP_MIN" 2 12 --no-paper --reserve-minutes 0.5 "$@"
        if [ "$BENCH_SECONDS" -gt 0 ]; then
            echo "== bench: at most $BENCH_SECONDS s, $(date -u +%T)"
            # shellcheck disable=SC2086  # BENCH_ARGS is a list of arguments
            timeout "$BENCH_SECONDS" "$PY" benchmarks/bench_batched.py --model "$STASH/$GGUF" \
                $BENCH_ARGS || echo "== bench stopped (exit $?)"
        fi
        echo "== lease done, $(date -u +%T)"
    } 2>&1 | tee "$OUT/lease.log"
    ;;
*)
    echo "usage: $0 stash [PART] | join | run SWEEP MINUTES [gpu_run.py arguments] | bench [arguments]" \
        "| lease [gpu_run.py arguments]" >&2
    exit 2
    ;;
esac
