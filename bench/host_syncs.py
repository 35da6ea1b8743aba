"""Host synchronisations per attack iteration: `python bench/host_syncs.py [--batch 32]`.

Counts, with zubov_bench.evaluation.host_sync, the operations that would make the host wait for a
GPU in each iteration of our PGD (L∞, L2, and the DLR loop), Square, the Lyapunov-aware attack and
pyautoattack's APGD-CE / APGD-DLR, on the committed results/quick digits checkpoints of `node` and
`zubov`. Runs on a CPU (the count is the same on any device; see the module's docstring). Each
attack runs twice, with two iteration counts, and the difference per extra iteration is reported,
so the fixed cost of a call (clean prediction, random start) cancels.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import ROOT, table  # noqa: E402
from zubov_bench.checkpoint import load_checkpoint  # noqa: E402
from zubov_bench.data import load_dataset  # noqa: E402
from zubov_bench.device import resolve_device  # noqa: E402
from zubov_bench.evaluation.host_sync import syncs_per_iteration  # noqa: E402
from zubov_bench.perturbations import registry  # noqa: E402

CHECKPOINTS = ROOT / "results" / "quick" / "checkpoints"
EPS = 0.1


def ours(name: str, iterations_key: str, **params):
    """One of our registered attacks, called as the evaluation calls it."""
    def run(model, x, y, n):
        attack = registry.create_perturbation(name, **{iterations_key: n, **params})
        return attack(model, x, y, EPS, torch.Generator().manual_seed(0))
    return run


def apgd(loss: str):
    """pyautoattack's APGD, called as AutoAttack calls it (one restart)."""
    def run(model, x, y, n):
        from pyautoattack.autopgd_base import APGDAttack

        attack = APGDAttack(model, n_iter=n, norm="Linf", n_restarts=1, eps=EPS, seed=0, loss=loss,
                            device=x.device)
        return attack.perturb(x, y)
    return run


ATTACKS = {
    "PGD L∞ (CE, torchattacks loop)": ours("pgd", "steps", norm="linf"),
    "PGD L2 (CE, torchattacks loop)": ours("pgd", "steps", norm="l2"),
    "PGD L∞ (DLR, our loop)": ours("pgd", "steps", norm="linf", loss="dlr"),
    "Square L∞ (pyautoattack code)": ours("square", "n_queries"),
    "Lyapunov-aware (APGD-CE + APGD-DLR on -V(z0)/tau, per step of both)": ours("lyapunov", "steps"),
    "APGD-CE (pyautoattack)": apgd("ce"),
    "APGD-DLR (pyautoattack)": apgd("dlr"),
}
ITERATIONS = {"Square L∞ (pyautoattack code)": (4, 12)}  # Square's schedule is per query


def measure(models: dict, x, y, only=None) -> list[list[object]]:
    rows = []
    for label, run in ATTACKS.items():
        if only and not any(o.lower() in label.lower() for o in only):
            continue
        for model_name, model in models.items():
            if label.startswith("Lyapunov") and not getattr(model, "has_lyapunov", False):
                continue
            torch.manual_seed(0)
            low, high = ITERATIONS.get(label, (2, 6))
            per_iteration, ops = syncs_per_iteration(lambda n: run(model, x, y, n), (low, high))
            detail = ", ".join(f"{op} {count / (high - low):g}" for op, count in sorted(ops.items())) or "none"
            rows.append([label, model_name, f"{per_iteration:g}", detail])
            print(" | ".join(str(c) for c in rows[-1]), flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32, help="digits test images per attack (default 32)")
    parser.add_argument("--only", action="append", help="attacks whose label contains this text")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda: the count is the same, "
                        "except copies between host and device, which only a GPU run has")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    torch.set_num_threads(1)  # counts do not depend on threads; keep the shared machine free
    data = load_dataset("digits")
    models = {name: load_checkpoint(CHECKPOINTS / f"{name}-digits-s0" / "model.pt", device)[0]
              for name in ("node", "zubov")}
    x, y = data.x_test[:args.batch].to(device), data.y_test[:args.batch].to(device)
    print(f"digits, batch {args.batch}, L∞ ε = {EPS}, on {device}; host synchronisations per iteration:", flush=True)
    rows = measure(models, x, y, args.only)
    print()
    print("\n".join(table(["attack", "model", "host syncs per iteration", "per operator"], rows)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
