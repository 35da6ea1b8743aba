#!/usr/bin/env bash
# Zubov-Net's aligned mechanism measured (docs/zubov-net.md section 3): three training seeds of the
# toy2d and digits presets, and one FashionMNIST run, each with the Lyapunov alignment diagnostics on
# the whole test set (toy2d, digits) or 1,000 test images (FashionMNIST); `node` under the same
# budgets for the accuracy comparison. The FashionMNIST run here is the first aligned one (5 epochs,
# held outer shell: aligned-fashion-mnist.yaml); the fashion-mnist recipe as it now trains, three
# seeds at 6 epochs against node, is run-aligned-fashion.sh. Run from the repository root:
#   bash results/zubov-study/run-aligned.sh
set -euo pipefail
OUT=results/zubov-study/aligned
export OMP_NUM_THREADS=1
train_eval() {  # model dataset seed n_samples [extra train flags]
  local model=$1 dataset=$2 seed=$3 n=$4; shift 4
  local dir="$OUT/checkpoints/$model-$dataset-s$seed"
  [ -f "$dir/model.pt" ] || zubov-bench train --model "$model" --dataset "$dataset" --seed "$seed" \
    --out "$dir" --force --no-progress "$@"
  zubov-bench eval -c "$dir/model.pt" -a gaussian --eps 0.1 --n-samples "$n" --batch-size 500 \
    --out "$OUT" --no-progress
}
for seed in 0 1 2; do
  train_eval zubov toy2d "$seed" 300 & train_eval node toy2d "$seed" 300; wait
  # the digits recipe trains Zubov-Net 40 epochs (docs/zubov-net.md): node gets the same budget
  train_eval zubov digits "$seed" 450 & train_eval node digits "$seed" 450 --epochs 40; wait
done
train_eval zubov fashion-mnist 0 1000 --config results/zubov-study/aligned-fashion-mnist.yaml
zubov-bench table --results "$OUT" --alignment --out "$OUT/alignment.md"
zubov-bench table --results "$OUT" --out "$OUT/accuracy.md"
