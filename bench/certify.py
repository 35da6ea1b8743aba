"""Randomized smoothing speed: `certify` with n = 1,000 (n0 = 100) on 500 FashionMNIST test images of a
`node` checkpoint, against a baseline measured in the same run: the same number of plain forward
passes (500 x 1,100 inputs, no noise, same batch size) of the same model.

Target (issue 19): at most 5 minutes on a 2-core CPU.  Run:  OMP_NUM_THREADS=2 python bench/certify.py
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time

import torch

from common import ROOT, machine
from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.data import load_dataset
from zubov_bench.device import resolve_device
from zubov_bench.evaluation.certify import certify_checkpoints
from zubov_bench.evaluation.plan import eval_subset

DEFAULT_CHECKPOINT = ROOT / "results/fashion-mnist/checkpoints/node-fashion-mnist-s0/model.pt"
TARGET_S = 300.0


@torch.no_grad()
def plain_forwards(model, x: torch.Tensor, copies: int, batch_size: int) -> int:
    """copies forward passes of every image, batch_size inputs at a time; returns the number of inputs."""
    done = 0
    for i in range(len(x)):
        for start in range(0, copies, batch_size):
            rows = x[i:i + 1].repeat(min(batch_size, copies - start), *([1] * (x.dim() - 1)))
            model(rows).argmax(1)
            done += len(rows)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", default=str(DEFAULT_CHECKPOINT))
    parser.add_argument("--n-samples", type=int, default=500)
    parser.add_argument("--n0", type=int, default=100)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    device = resolve_device(args.device)
    info = machine(device)
    print(f"# bench/certify.py  {info['date']}  {info['device']}, {info['torch_threads']} torch threads, "
          f"commit {info['commit']}, load {info['load_at_start']}")
    model, meta = load_checkpoint(args.checkpoint, device=device)
    data = load_dataset(meta["data"]["name"])
    x = data.x_test[eval_subset(len(data.x_test), args.n_samples)].to(device)

    start = time.perf_counter()
    inputs = plain_forwards(model, x, args.n0 + args.n, args.batch_size)
    baseline = time.perf_counter() - start

    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        records = certify_checkpoints(args.checkpoint, sigma=0.25, n0=args.n0, n=args.n, n_samples=args.n_samples,
                                      batch_size=args.batch_size, device=args.device, out=out, progress=False,
                                      log=lambda m: print(m, file=sys.stderr))
        wall = time.perf_counter() - start
    print(f"model {meta['model']} on {meta['data']['name']}, {args.n_samples} images, n0 = {args.n0}, "
          f"n = {args.n}, batch {args.batch_size}: {inputs:,} noisy inputs")
    print(f"plain forward passes (baseline)   {baseline:8.1f} s")
    print(f"certify (smoothing, whole command) {wall:8.1f} s   ({wall / baseline:.2f}x the baseline; "
          f"target <= {TARGET_S:.0f} s: {'met' if wall <= TARGET_S else 'NOT met'})")
    print("certified accuracy: " + ", ".join(f"r = {r.severity:g}: {r.robust_acc:.1%}" for r in records))


if __name__ == "__main__":
    main()
