#!/usr/bin/env bash
# The two device calls of a GPU lease (benchmarks/GPU_RUN.md), run in the repository root there.
#
#   bash benchmarks/gpu_lease.sh stash                      # call 1, carry .gpu_carry/model/p0
#   bash benchmarks/gpu_lease.sh run SWEEP MINUTES [ARGS]   # call 2, carry .gpu_carry/model/p1
#                                                           #   and .whl (the gguf wheel)
#   bash benchmarks/gpu_lease.sh bench [ARGS]               # after `run`, same machine: cells
#                                                           #   one by one, batched, 2 workers
# `stash` keeps the first half of the SmolLM2 GGUF file outside the working tree; `run` joins
# both halves (sha256 checked), installs the carried wheels, and runs benchmarks/gpu_run.py
# with --out "$OUT" and the joined model; ARGS go to gpu_run.py. `bench` runs
# benchmarks/bench_batched.py on the joined model (ARGS go to it; a later --model wins).
# STASH (default /tmp/lawfit_carry) says where the halves and the model go.
set -euo pipefail
STASH=${STASH:-/tmp/lawfit_carry}
GGUF=SmolLM2-135M-Instruct.Q4_1.gguf
PY=${PYTHON:-python3}

prepare() {  # join the model's halves once, install the carried wheels
    if [ ! -f "$STASH/$GGUF" ]; then
        "$PY" benchmarks/gpu_pack.py join "$STASH/p0" .gpu_carry/model/p0 .gpu_carry/model/p1 \
            -o "$STASH/$GGUF"
    fi
    if ls .whl/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$STASH/site" .whl/*.whl
    fi
    if [ -d "$STASH/site" ]; then
        export PYTHONPATH="$STASH/site${PYTHONPATH:+:$PYTHONPATH}"
    fi
    export PYTHONUNBUFFERED=1
}

case "${1:-}" in
stash)
    mkdir -p "$STASH"
    cp -r .gpu_carry/model/p0 "$STASH/"
    (cd "$STASH/p0" && sha256sum -c --ignore-missing SHA256SUMS)
    echo "stashed $(du -sh "$STASH/p0" | cut -f1) in $STASH/p0; make call 2 now"
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
*)
    echo "usage: $0 stash | run SWEEP MINUTES [gpu_run.py arguments] | bench [arguments]" >&2
    exit 2
    ;;
esac
