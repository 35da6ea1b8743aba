#!/usr/bin/env bash
# Every GPU figure issue 21 asks for, in at most 8 minutes, for a session that gets a CUDA device:
#   1. host synchronisations per attack iteration on the device (bench/host_syncs.py --device cuda)
#   2. the training step, Zubov-Net against node, eager (bench/run.py --only train_step, printed only)
#   3. with --cuda-graphs: the training step, images/s of node and zubov on FashionMNIST at the CUDA
#      preset's batch, and AutoAttack standard on 1,000 FashionMNIST images for node
#      (bench/run.py --gpu --cuda-graphs --write: the GPU block of bench/RESULTS.md, written after
#      each benchmark, so a step stopped by its limit keeps what it finished; it replaces the earlier
#      GPU block, whose hand-written H200 notes of 2026-11-26 stay in git history)
# Each step has its own time limit, reports ok or FAILED, and the script goes on. The logs go to
# bench/logs/ (and to $OUT/ when set, as on a lent device machine).
#   bench/gpu.sh          PY=python, the default; DEVICE=cpu walks the same steps without a GPU
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}
stamp=$(date -u +%Y-%m-%d-%H%M)
logs=bench/logs
mkdir -p "$logs"
failed=0

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS, its output into a log
    local name=$1 limit=$2 t0=$SECONDS log="$logs/$stamp-gpu-$1.log"
    shift 2
    echo "== $name (limit ${limit} s): $*"
    timeout "$limit" "$@" 2>&1 | tee "$log"
    local rc=${PIPESTATUS[0]}
    if [ "$rc" -eq 0 ]; then
        echo "== $name ok in $((SECONDS - t0)) s"
    else
        echo "== $name FAILED (exit $rc$([ "$rc" -eq 124 ] && echo ', time limit')) after $((SECONDS - t0)) s"
        failed=$((failed + 1))
    fi
    if [ -n "${OUT:-}" ]; then cp "$log" "$OUT/"; fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
step host-syncs 60 $PY bench/host_syncs.py --device "$DEVICE" --only PGD --only APGD
step train-step-eager 90 $PY bench/run.py --device "$DEVICE" --quick --only train_step
step gpu-figures 300 $PY bench/run.py --device "$DEVICE" --gpu --cuda-graphs --quick --write
if [ -n "${OUT:-}" ]; then cp bench/RESULTS.md "$OUT/"; fi
echo "gpu.sh: $failed step(s) failed"
exit $((failed > 0))
