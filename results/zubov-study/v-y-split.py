"""Does V_y fall from z(0) to z(T) for the test points the model classifies correctly, and for the others?

Issue 16 asks V_y to fall for >= 99% of all test points; docs/zubov-net.md section 3 argues that a
misclassified point ends in another class's PRoA, where separation puts V_y above c + m, so the
criterion asks for about 99% accuracy. This splits the alignment diagnostics' "V_y falls" share by
clean correctness to measure that argument, on the same test subset `eval --n-samples N` uses.

    python results/zubov-study/v-y-split.py N CHECKPOINT...   (a Markdown table on stdout)
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch

from zubov_bench.evaluation.context import load_context
from zubov_bench.models.protocols import require_lyapunov_model


def split(path: str, n: int) -> dict:
    ctx = load_context(path, n, 500, torch.device("cpu"))
    model = ctx.model
    require_lyapunov_model(model, "the V_y split")
    with torch.no_grad():
        z0 = model.features(ctx.x)
        zs = model.solve(z0, model.grid(2))
        v_y = [model.lyapunov(z, ctx.y) for z in (zs[0], zs[-1])]
        level = float(model.cfg.level)
    falls = v_y[1] < v_y[0]
    correct = ctx.clean.to(falls.device)
    share = lambda mask: float(mask.float().mean()) if mask.numel() else float("nan")  # noqa: E731
    return {"checkpoint": path, "seed": int((ctx.meta.get("extra") or {}).get("seed", -1)), "n": ctx.n,
            "correct": int(correct.sum()), "falls_all": share(falls), "falls_correct": share(falls[correct]),
            "falls_wrong": share(falls[~correct]), "wrong_zT_in_own_proa": share(v_y[1][~correct] < level)}


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: v-y-split.py N CHECKPOINT...", file=sys.stderr)
        return 2
    n = int(argv[0])
    print("| run | seed | test points | clean-correct | V_y falls: all | correct | misclassified "
          "| misclassified z(T) in own PRoA |")
    print("|---|---|---|---|---|---|---|---|")
    for path in argv[1:]:
        r = split(path, n)
        print(f"| {Path(r['checkpoint']).parent.name} | {r['seed']} | {r['n']} | {r['correct']} | {r['falls_all']:.1%} "
              f"| {r['falls_correct']:.1%} | {r['falls_wrong']:.1%} | {r['wrong_zT_in_own_proa']:.1%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
