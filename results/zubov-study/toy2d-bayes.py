"""The best accuracy any classifier can expect on toy2d: the Bayes rule of its generator.

toy2d (zubov_bench.data.small.make_toy2d) draws each class uniformly along an arc and adds
Gaussian noise, so the class densities are known exactly and the Bayes-optimal classifier is
argmax_k p(x | k), the classes being balanced (zubov_bench.data.small.toy2d_bayes_predict). This
prints that rule's accuracy on the committed toy2d test split, its expected accuracy on fresh draws
(a Monte Carlo estimate with its standard error), and the chance that the Bayes rule itself reaches
a given accuracy on a 300-point test set. Given checkpoints of toy2d models, it also prints each
one's accuracy on the committed split and on the same fresh points, and how often it agrees with
the Bayes rule there.

    python results/zubov-study/toy2d-bayes.py [--target 0.97] [CHECKPOINT ...]
"""
from __future__ import annotations

import argparse
import math
import sys

import numpy as np
import torch
from scipy.stats import binom

from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.data import load_dataset
from zubov_bench.data.small import make_toy2d, toy2d_bayes_predict


def model_predict(checkpoint: str, x: np.ndarray, chunk: int = 10000) -> np.ndarray:
    model, _ = load_checkpoint(checkpoint)
    with torch.no_grad():
        return np.concatenate([model(torch.as_tensor(x[i:i + chunk], dtype=torch.float32)).argmax(1).numpy()
                               for i in range(0, len(x), chunk)])


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=float, default=0.97, help="an accuracy (default 0.97)")
    parser.add_argument("checkpoints", nargs="*", help="toy2d checkpoints to score beside the Bayes rule")
    args = parser.parse_args(argv)
    data = load_dataset("toy2d")
    x, y = data.x_test.numpy().reshape(-1, 2), data.y_test.numpy()
    n = len(y)
    test_acc = float((toy2d_bayes_predict(x) == y).mean())
    fresh_x, fresh_y = make_toy2d(n_per_class=20000, seed=123)
    bayes_fresh = toy2d_bayes_predict(fresh_x)
    p = float((bayes_fresh == fresh_y).mean())
    se = math.sqrt(p * (1 - p) / len(fresh_y))
    need = math.ceil(args.target * n - 1e-9)
    chance = float(1 - binom.cdf(need - 1, n, p))
    print(f"Bayes rule on the toy2d test split: {test_acc:.1%} ({round(test_acc * n)} of {n})")
    print(f"Bayes accuracy of the generator: {p:.2%} +- {se:.2%} ({len(fresh_y):,} fresh points)")
    print(f"chance that the Bayes rule scores >= {args.target:.0%} ({need} of {n}) on a fresh test split: {chance:.0%}")
    for checkpoint in args.checkpoints:
        on_split = float((model_predict(checkpoint, x) == y).mean())
        fresh = model_predict(checkpoint, fresh_x)
        acc = float((fresh == fresh_y).mean())
        print(f"{checkpoint}: {on_split:.1%} on the test split, {acc:.2%} +- "
              f"{math.sqrt(acc * (1 - acc) / len(fresh_y)):.2%} on the fresh points "
              f"(Bayes rule minus model {p - acc:+.2%}), same prediction as the Bayes rule on "
              f"{float((fresh == bayes_fresh).mean()):.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
