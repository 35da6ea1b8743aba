"""Do the committed `results/quick` numbers still come out of the committed code? (issue 18)

Re-trains two cheap models of the `quick` preset (node, tisode on digits) with the preset's exact
plan (epochs, configs, seed, torch threads) and re-evaluates a slice of its grid (clean, one noise,
FGSM and PGD-20 at L∞ ε = 0.1, same 200 test examples and evaluation seed), then compares every
re-computed accuracy with the committed record of the same method and settings.

How close is close enough (TOLERANCE): bitwise equality is only promised on identical hardware,
torch build and thread count (deterministic kernels, fixed seeds). On another CPU floating-point
reductions may round differently and the short budgets amplify that: across two machines of the
same kind the issue measured `stable` at 89.1% against 93.1%. For this slice we measured no
difference at all: the re-run on this project's 2-core AMD EPYC and on a 16-core Intel Xeon
(1 torch thread each) reproduced every compared number bit for bit. The tolerance, 2 points per
accuracy (4 of the 200 test examples), is a margin for other CPUs and torch builds, not a measured
spread; a changed model, recipe, preset or attack moves these numbers by more. Where every compared
checkpoint's env.json names this machine's processor (env.json records it since the `cpu` field
exists) the tolerance is 0: on the same kind of machine the promise is bit for bit. The worst-case union is not compared: it mixes every attack of the
preset, of which this slice runs three.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

from zubov_bench.records import Record
from zubov_bench.reports.regenerate import diff_records, measurement
from zubov_bench.reports import load_records
from zubov_bench.reproduce import load_preset
from zubov_bench.reproduce.pipeline import plan_runs

REPO = Path(__file__).resolve().parents[1]
COMMITTED = Path(os.environ.get("ZUBOV_BENCH_REPRO_RESULTS", REPO / "results" / "quick"))
PRESET = "quick"
MODELS = ("node", "tisode")
ATTACKS = ["gaussian", "fgsm", "pgd:steps=20"]
EPS = 0.1
TOLERANCE = 0.02  # per accuracy in [0, 1]: 2 points; see the module docstring for why


def differences(fresh: list[Record], committed: list[Record], tolerance: float) -> list[str]:
    """Every fresh accuracy with no committed record, or more than `tolerance` away from it (the
    committed store has the whole grid; the slice is compared, not the store)."""
    result = diff_records(committed, fresh, tolerance, skip=lambda r: r.perturbation == "worst-case")
    return result.beyond + [f"{line}: no committed record" for line in result.only_new]


@pytest.fixture(scope="module")
def rerun(tmp_path_factory):
    """Train and evaluate the slice once for the module: (records, {method: final test accuracy})."""
    from zubov_bench.evaluation import evaluate
    from zubov_bench.training.run import train_run

    preset = load_preset(PRESET)
    root = tmp_path_factory.mktemp("repro")
    plans = [p for p in plan_runs(preset, list(MODELS), root / "checkpoints") if p.model in MODELS]
    threads = torch.get_num_threads()
    torch.set_num_threads(preset.threads or threads)  # as reproduce's workers run
    try:
        test_acc = {p.method: train_run(p.resolved, p.run_dir, device="cpu", progress=False)["test_acc"]
                    for p in plans}
        records = evaluate([str(p.checkpoint) for p in plans], attacks=ATTACKS, eps=str(EPS),
                           n_samples=preset.eval.n_samples, batch_size=preset.eval.batch_size,
                           seed=preset.eval.seed, device="cpu", grad_solver=preset.eval.grad_solver,
                           out=str(root / "eval"), progress=False, log=lambda _: None)
    finally:
        torch.set_num_threads(threads)
    return records, test_acc


def _committed_training(folder: Path) -> dict:
    manifest = json.loads((folder / "checkpoints" / "manifest.json").read_text())
    return {e["method"]: e["test_acc"] for e in manifest["checkpoints"]}


def tolerance_here(folder: Path) -> float:
    """0 where every compared committed checkpoint was trained on this processor, else TOLERANCE."""
    from zubov_bench.provenance import cpu_kind

    here = cpu_kind()
    envs = [folder / "checkpoints" / f"{m}-digits-s0" / "env.json" for m in MODELS]
    same = all(e.exists() and json.loads(e.read_text()).get("cpu") == here for e in envs)
    return 0.0 if same else TOLERANCE


def test_committed_quick_results_regenerate_within_tolerance(rerun):
    records, test_acc = rerun
    tolerance = tolerance_here(COMMITTED)
    kinds = {(r.method, r.perturbation) for r in records}
    assert {(m, p) for m in MODELS for p in ("gaussian", "fgsm", "pgd")} <= kinds
    problems = differences(records, load_records(COMMITTED), tolerance)
    committed = _committed_training(COMMITTED)
    problems += [f"{m} training test_acc: re-run {acc:.4f}, committed {committed.get(m)}"
                 for m, acc in test_acc.items() if m not in committed or abs(acc - committed[m]) > tolerance]
    assert not problems, (f"results/{PRESET} is stale or does not regenerate here within ±{100 * tolerance:g} "
                          "points (regenerate it with `zubov-bench reproduce --preset quick`):\n"
                          + "\n".join(problems))


def test_a_stale_committed_number_is_caught(rerun, tmp_path):
    """A copy of the committed store with one re-computed accuracy moved by 4 points must fail."""
    records, _ = rerun
    copy = tmp_path / "quick"
    shutil.copytree(COMMITTED, copy, ignore=shutil.ignore_patterns("checkpoints", "figures", "outcomes"))
    target = measurement(next(r for r in records if r.perturbation == "pgd" and r.method == "node"))
    lines = []
    for line in (copy / "records.jsonl").read_text().splitlines():
        record = Record.from_dict(json.loads(line))
        if measurement(record) == target:
            line = json.dumps({**json.loads(line), "robust_acc": record.robust_acc + TOLERANCE + 0.01})
        lines.append(line)
    (copy / "records.jsonl").write_text("\n".join(lines) + "\n")
    problems = differences(records, load_records(copy), TOLERANCE)
    assert len(problems) == 1 and "node s0 digits: pgd linf 0.1" in problems[0] and "robust_acc" in problems[0]
