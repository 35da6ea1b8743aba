"""Eval harness overhead against bare torchattacks, and what the attacks' early exits save."""
from __future__ import annotations

import tempfile

import torch
import torchattacks

from common import Report, median_seconds, ms, table
from zubov_bench.device import deterministic_algorithms
from zubov_bench.evaluation.context import load_context
from zubov_bench.evaluation.runner import Job, job_record, run_job
from zubov_bench.evaluation.store import ResultsStore
from zubov_bench.perturbations import create_perturbation
from zubov_bench.perturbations.base import predict

TARGET = 1.10
EPS, STEPS = 0.1, 20


class _NoBar:
    def update(self, n):
        pass


def harness(ctx, perturbation, store_root: str):
    """Our whole per-record path: batches, attack, threat-model check, scoring, outcome store."""
    store = ResultsStore(store_root)
    job = Job(perturbation, EPS, None, ctx.n)
    record = job_record(ctx, job, seed=0, shard=None)

    def run():
        with deterministic_algorithms(True, ctx.device):
            run_job(ctx, job, record, 0, store, True, None, _NoBar())
    return run


def bare_torchattacks(ctx, only_correct: bool):
    """What a user would write by hand: torchattacks' PGD on every batch, then the accuracy."""
    def run():
        correct = 0
        for rows in ctx.batches:
            rows = torch.from_numpy(rows)
            if only_correct:
                rows = rows[ctx.clean[rows]]
            x, y = ctx.x[rows], ctx.y[rows]
            atk = torchattacks.PGD(ctx.model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS,
                                   random_start=True)
            x_adv = atk(x, y)
            with torch.no_grad():
                correct += int((ctx.model(x_adv).argmax(1) == y).sum())
        return correct
    return run


def overhead(report: Report, checkpoints: dict[str, str], n: int, repeats: int) -> None:
    rows = []
    for name, path in checkpoints.items():
        ctx = load_context(path, n, 250, torch.device("cpu"))
        pgd = create_perturbation("pgd", steps=STEPS)
        with tempfile.TemporaryDirectory() as store:
            t = median_seconds({"ours": harness(ctx, pgd, store),
                                "bare, all rows": bare_torchattacks(ctx, only_correct=False),
                                "bare, clean-correct rows": bare_torchattacks(ctx, only_correct=True)},
                               repeats)
        ratio = t["ours"] / t["bare, clean-correct rows"]
        rows.append([name, f"{float(ctx.clean.float().mean()):.1%}", ms(t["ours"]), ms(t["bare, all rows"]),
                     ms(t["bare, clean-correct rows"]),
                     report.ratio(f"eval harness overhead, {name} (vs bare on the same rows)", ratio, TARGET)])
    lines = [f"PGD-L∞ ε = {EPS}, {STEPS} steps, {n} digits test images in batches of 250, CPU. `ours` is "
             "the evaluation's per-record path (`run_job`: attack, threat-model check, scoring with "
             "solver-failure handling, NFE, per-batch resume files, the outcome store). Ours attacks "
             "only the clean-correct rows, so the fair reference is bare torchattacks on those rows.", ""]
    lines += table(["model", "clean acc", "ours ms", "bare, all rows ms", "bare, clean-correct ms",
                    "overhead"], rows)
    report.section("Eval harness overhead", lines)


def restarts_naive(model, x, y, restarts: int):
    """Every restart attacks every sample: what a loop without early exit costs."""
    best = x.clone()
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for _ in range(restarts):
        cand = torchattacks.PGD(model, eps=EPS, alpha=2.5 * EPS / STEPS, steps=STEPS, random_start=True)(x, y)
        new = ~fooled & (predict(model, cand) != y)
        best[new], fooled = cand[new], fooled | new
    return best


def early_exit(report: Report, checkpoints: dict[str, str], n: int, repeats: int, restarts: int = 3) -> None:
    rows = []
    for name, path in checkpoints.items():
        ctx = load_context(path, n, n, torch.device("cpu"))
        x, y = ctx.x, ctx.y
        ours = create_perturbation("pgd", steps=STEPS, restarts=restarts)
        correct = ctx.clean

        def with_exits():
            gen = torch.Generator().manual_seed(0)
            ours(ctx.model, x[correct], y[correct], EPS, gen, ctx.index[correct])

        t = median_seconds({"with": with_exits, "without": lambda: restarts_naive(ctx.model, x, y, restarts)},
                           repeats)
        rows.append([name, f"{float(correct.float().mean()):.1%}", ms(t["without"]), ms(t["with"]),
                     f"{1 - t['with'] / t['without']:.0%}"])
    lines = [f"PGD-L∞ ε = {EPS}, {STEPS} steps, {restarts} restarts, {n} digits test images. Without "
             "early exit every restart attacks every sample; ours skips misclassified samples and "
             "re-attacks only those still robust. AutoAttack's own attacks already work this way "
             "(pyautoattack runs each attack only on the points still robust).", ""]
    lines += table(["model", "clean acc", "without exits ms", "with exits ms", "saving"], rows)
    report.section("Attack early exit", lines)


def run(report: Report, checkpoints: dict[str, str], quick: bool = False) -> None:
    n = 250 if quick else 500
    overhead(report, checkpoints, n, repeats=3 if quick else 9)  # 5 let one noisy run read 1.11x
    early_exit(report, checkpoints, n // 2, repeats=3)
