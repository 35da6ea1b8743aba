#!/usr/bin/env bash
# Zubov-Net's aligned mechanism on FashionMNIST as the `fashion-mnist` recipe trained it before every
# z(0) started outside all PRoAs (zubov_bench/models/zubov.py; docs/zubov-net.md section 3): the
# recipe with start_level=0, alpha=1 and T=1 pinned, at the fashion grid's common budget:
# 6 epochs, batch 128, lr 2e-3, three training seeds, and `node` under the same budget. Each
# checkpoint is evaluated on 1,000 test images (Gaussian noise at sigma = 0.1, a cheap perturbation:
# `eval` stores the Lyapunov alignment diagnostics beside the records), then v-y-split.py splits
# "V_y falls" by clean correctness. Two runs at a time, one thread each. Run from the repository root:
#   bash results/zubov-study/run-aligned-fashion.sh
# A rerun finds the finished checkpoints and records and only writes the tables again.
set -euo pipefail
OUT=results/zubov-study/aligned-fashion
N=1000
EPOCHS=6
export OMP_NUM_THREADS=1
PREVIOUS_RECIPE=(--set start_level=0 --set start_ceiling=0 --set alpha=1 --set T=1)
train() {  # model seed
  local dir="$OUT/checkpoints/$1-fashion-mnist-s$2" pin=()
  [ "$1" = zubov ] && pin=("${PREVIOUS_RECIPE[@]}")
  [ -f "$dir/model.pt" ] || zubov-bench train --model "$1" --dataset fashion-mnist --seed "$2" \
    --epochs "$EPOCHS" "${pin[@]}" --out "$dir" --force --no-progress
}
# zubov costs about three node runs, so the second slot takes node's three seeds after two zubov seeds
train zubov 0 & train zubov 1; wait
train zubov 2 & { train node 0; train node 1; train node 2; }; wait
for model in zubov node; do
  for seed in 0 1 2; do
    zubov-bench eval -c "$OUT/checkpoints/$model-fashion-mnist-s$seed/model.pt" -a gaussian --eps 0.1 \
      --n-samples "$N" --batch-size 500 --out "$OUT" --no-progress
  done
done
python results/zubov-study/v-y-split.py "$N" "$OUT"/checkpoints/zubov-fashion-mnist-s{0,1,2}/model.pt \
  > "$OUT/v-y-split.md"
zubov-bench table --results "$OUT" --alignment --out "$OUT/alignment.md"
zubov-bench table --results "$OUT" --out "$OUT/accuracy.md"
