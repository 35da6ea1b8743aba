#!/usr/bin/env bash
# On a machine with a CUDA GPU: run every CLI path with --device cuda on digits (training with
# PGD adversarial training, torchrun with NCCL, the whole attack registry, a table), a profile of
# AutoAttack (bench/profile_autoattack.py), and the GPU benchmarks, written into bench/RESULTS.md.
# Each step reports ok or FAILED and the script goes on.
#   bench/gpu-check.sh            (ZB="python -m zubov_bench" where the console script is absent)
set -uo pipefail
cd "$(dirname "$0")/.."
ZB=${ZB:-zubov-bench}
PY=${PY:-python}
DEVICE=${DEVICE:-cuda}  # DEVICE=cpu walks the same steps without a GPU
tmp=$(mktemp -d)
failed=0

step() {  # step NAME SECONDS COMMAND...: run COMMAND for at most SECONDS
    local name=$1 limit=$2 t0=$SECONDS
    shift 2
    echo "== $name: $*"
    if timeout "$limit" "$@"; then
        echo "== $name ok in $((SECONDS - t0)) s"
    else
        echo "== $name FAILED (exit $?) after $((SECONDS - t0)) s"
        failed=$((failed + 1))
    fi
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
step train-node 120 $ZB train --model node --epochs 2 --device "$DEVICE" --out "$tmp/node" --no-progress
step train-zubov 120 $ZB train --model zubov --epochs 2 --device "$DEVICE" --out "$tmp/zubov" --no-progress
step profile-autoattack 240 $PY bench/profile_autoattack.py --device "$DEVICE" --images 100
step bench 330 $PY bench/run.py --device "$DEVICE" --write ${BENCH_ARGS:-}
step torchrun-nccl 90 $PY -m torch.distributed.run --standalone --nproc_per_node=1 -m zubov_bench train \
    --model node --epochs 1 --device "$DEVICE" --out "$tmp/ddp" --no-progress
step eval-all 200 $ZB eval -c "$tmp/node/model.pt" -c "$tmp/zubov/model.pt" --attack all --eps 0.1 \
    --n-samples 100 --batch-size 50 --transfer-from "$tmp/node/model.pt" --device "$DEVICE" \
    --out "$tmp/eval" --no-progress
step table 60 $ZB table --results "$tmp/eval" --worst-case
echo "gpu-check: $failed step(s) failed"
exit $((failed > 0))
