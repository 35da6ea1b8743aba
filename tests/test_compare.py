"""`zubov-bench compare`: paired differences on the same test examples, seeds pooled (issue 18)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from zubov_bench.errors import UserError
from zubov_bench.evaluation import ResultsStore
from zubov_bench.records import Record
from zubov_bench.reports import load_records
from zubov_bench.reports.compare import compare


def _put(store: ResultsStore, method: str, train_seed: int, index, clean, robust, *, perturbation="pgd",
         severity=0.1, grad_solver="deployed", steps=20):
    index, clean, robust = (np.asarray(v) for v in (index, clean, robust))
    record = Record(model=method, method=method, dataset="digits", checkpoint=f"{method}-s{train_seed}.pt",
                    checkpoint_sha256=f"{method}{train_seed}".ljust(64, "0"), train_seed=train_seed,
                    perturbation=perturbation, threat="linf", severity=severity, seed=0,
                    grad_solver=grad_solver, n=len(index), clean_acc=float(clean.mean()),
                    robust_acc=float(robust.mean()), params={"steps": steps})
    store.put(record, {"index": index.astype(np.int64), "clean": clean.astype(bool),
                       "robust": robust.astype(bool), "failed": np.zeros(len(index), bool)})


def _run(root, *args):
    from click.testing import CliRunner

    from zubov_bench.cli import main

    return CliRunner().invoke(main, ["compare", *map(str, args), "--results", str(root)])


@pytest.fixture
def store(tmp_path):
    """Two methods, two training seeds, 40 examples; A is right on more of them than B."""
    store = ResultsStore(tmp_path)
    rng = np.random.default_rng(0)
    for seed in (0, 1):
        index = np.arange(100, 140)
        a, b = rng.random(40) < 0.8, rng.random(40) < 0.5
        order = rng.permutation(40)  # pairing must go by example index, not by position
        _put(store, "A", seed, index, np.ones(40), a)
        _put(store, "B", seed, index[order], np.ones(40), b[order])
    return store


def _truth(store):
    by = {}
    for r in store.records():
        o = store.outcomes(r.id)
        by[(r.method, r.train_seed)] = pd.Series(o["robust"], index=o["index"]).sort_index()
    a = np.concatenate([by[("A", s)].to_numpy() for s in (0, 1)])
    b = np.concatenate([by[("B", s)].reindex(by[("A", s)].index).to_numpy() for s in (0, 1)])
    return a, b


def test_paired_difference_and_exact_mcnemar_pool_the_seeds(store):
    a, b = _truth(store)
    result = compare(store.records(), store.outcomes, "A", "B", "pgd", n_boot=2000)
    pooled = result.table.set_index("train_seed").loc["pooled"]
    assert pooled["n"] == 80
    assert pooled["diff"] == pytest.approx(100 * (a.mean() - b.mean()))
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    assert (pooled["a_only"], pooled["b_only"]) == (a_only, b_only)
    assert pooled["p_mcnemar"] == pytest.approx(stats.binomtest(a_only, a_only + b_only).pvalue)
    assert pooled["ci_low"] < pooled["diff"] < pooled["ci_high"]
    assert "n = 40 × 2 seeds" in result.verdict and "McNemar p = " in result.verdict
    assert result.verdict.startswith(f"A − B (pgd linf 0.1) = {pooled['diff']:+.1f} points, 95% CI [")


def test_an_example_is_robust_only_if_it_survived_every_matching_record(tmp_path):
    store = ResultsStore(tmp_path)
    _put(store, "A", 0, [0, 1, 2, 3], [1, 1, 1, 1], [1, 1, 1, 0], grad_solver="deployed")
    _put(store, "A", 0, [0, 1, 2, 3], [1, 1, 1, 1], [1, 0, 1, 1], grad_solver="rk4:20")
    for solver in ("deployed", "rk4:20"):
        _put(store, "B", 0, [3, 2, 1, 0], [1, 1, 1, 1], [0, 0, 0, 0], grad_solver=solver)
    table = compare(store.records(), store.outcomes, "A", "B", "pgd", n_boot=200).table
    assert table.iloc[-1]["acc_a"] == pytest.approx(50.0)  # examples 0 and 2 survive both solvers
    only = compare(store.records(), store.outcomes, "A", "B", "pgd", grad_solver="rk4:20", n_boot=200).table
    assert only.iloc[-1]["acc_a"] == pytest.approx(75.0)


def test_clean_comparison_uses_the_clean_outcomes(tmp_path):
    store = ResultsStore(tmp_path)
    _put(store, "A", 0, [0, 1, 2, 3], [1, 1, 1, 0], [0, 0, 0, 0])
    _put(store, "B", 0, [0, 1, 2, 3], [1, 1, 1, 1], [0, 0, 0, 0])
    result = compare(store.records(), store.outcomes, "A", "B", n_boot=200)
    pooled = result.table.iloc[-1]
    assert (pooled["acc_a"], pooled["acc_b"], pooled["diff"]) == (75.0, 100.0, -25.0)
    assert result.verdict.startswith("A − B (clean) = -25.0 points")


def test_settings_that_do_not_pair_are_refused(tmp_path):
    store = ResultsStore(tmp_path)
    _put(store, "A", 0, [0, 1], [1, 1], [1, 0])
    _put(store, "B", 0, [0, 1], [1, 1], [1, 0], severity=0.2)
    _put(store, "C", 0, [5, 6], [1, 1], [1, 0])
    _put(store, "D", 0, [0, 1], [1, 1], [1, 0], severity=0.05)
    _put(store, "D", 0, [0, 1], [1, 1], [1, 0], severity=0.1)
    records = store.records()
    with pytest.raises(UserError, match="different settings"):
        compare(records, store.outcomes, "A", "B", "pgd")
    with pytest.raises(UserError, match="share no"):
        compare(records, store.outcomes, "A", "C", "pgd")
    with pytest.raises(UserError, match="give --threat and --eps"):
        compare(records, store.outcomes, "A", "D", "pgd")
    assert compare(records, store.outcomes, "A", "D", "pgd", severity=0.1, n_boot=200).table.iloc[-1]["diff"] == 0
    with pytest.raises(UserError, match="no records of method 'Z'"):
        compare(records, store.outcomes, "A", "Z", "pgd")


def test_cli_table_verdict_csv_and_bad_input(store, tmp_path):
    run = _run(store.root, "A", "B", "--perturbation", "pgd", "--n-boot", 500)
    assert run.exit_code == 0, run.output
    assert run.output.splitlines()[0].startswith("| train seed | A (%) | B (%) | A − B (points)")
    assert run.output.strip().splitlines()[-1].startswith("A − B (pgd linf 0.1) = ")
    run = _run(store.root, "A", "B", "--perturbation", "pgd", "--format", "csv", "--n-boot", 500)
    table = pd.read_csv(io.StringIO(run.output))
    assert list(table["train seed"].astype(str)) == ["0", "1", "pooled"] and table["pairs"].iloc[-1] == 80
    assert len(load_records(store.root)) == 4
    bad = _run(store.root, "A", "nope", "--perturbation", "pgd")
    assert bad.exit_code == 2 and bad.output.strip() == "error: no records of method 'nope' for pgd"
