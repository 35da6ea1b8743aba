"""Soundness check on the study's Zubov-Net (run.sh step `attack-zubov`): L2 PGD (margin loss, 3
restarts x 20 steps, images kept in [0, 1]) inside each certified example's Lyapunov radius must
fool none of them (lyapunov_certificate.fooled_lyapunov_certificates); as a control, the same
attack at 3x and 10x each radius."""
from __future__ import annotations

import sys

import numpy as np
import torch

from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.data import load_dataset
from zubov_bench.evaluation import ResultsStore
from zubov_bench.evaluation.lyapunov_certificate import LYAPUNOV_LABEL, fooled_lyapunov_certificates


def main(checkpoint: str, store_root: str) -> None:
    model, meta = load_checkpoint(checkpoint)
    model.requires_grad_(False)
    store = ResultsStore(store_root)
    record = next(r for r in store.all_records() if r.perturbation == LYAPUNOV_LABEL and r.severity == 0)
    outcome = store.outcomes(record.id)
    data = load_dataset(meta["data"]["name"])
    index = torch.from_numpy(outcome["index"].astype(np.int64))
    x, y = data.x_test[index], data.y_test[index]
    fooled = fooled_lyapunov_certificates(model, x, y, outcome, steps=20, restarts=3)
    certified = int((outcome["correct"] & (outcome["radius"] > 0)).sum())
    print(f"{certified} certified examples attacked with L2 PGD (3 restarts x 20 steps) at their radius: "
          f"{int(fooled.sum())} fooled")
    # control: the same attack beyond the certificates, so a 0 above says something about them
    for factor in (3, 10):
        wider = {**outcome, "radius": outcome["radius"] * factor}
        beyond = fooled_lyapunov_certificates(model, x, y, wider, steps=20, restarts=3)
        print(f"control, at {factor}x each certified radius: {int(beyond.sum())} of {certified} fooled")


if __name__ == "__main__":
    main(*sys.argv[1:3])
