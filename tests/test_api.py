"""The notebook API (issue 17, item 4): evaluate(nn.Module | checkpoint), load_results -> DataFrame."""
from __future__ import annotations

import pandas as pd
import pytest
import torch

import zubov_bench
from zubov_bench import EvalOptions, evaluate, load_results
from zubov_bench.errors import UserError
from zubov_bench.evaluation.runner import evaluate as evaluate_checkpoints

SMALL = dict(n_samples=40, batch_size=20, progress=False, device="cpu")


def key(r):
    return (r.perturbation, r.severity, r.grad_solver, r.params.get("sanity", ""))


def test_a_registered_module_scores_as_its_checkpoint(node_ckpt, tmp_path):
    from zubov_bench.checkpoint import load_checkpoint

    module, _ = load_checkpoint(node_ckpt)
    module.train()  # evaluate must score the deployed (eval-mode) model and give the module back as it was
    from_module = evaluate(module, dataset="digits", attacks=["pgd:steps=5"],
                           options=EvalOptions(eps="0.1", out=tmp_path / "m", **SMALL))
    from_file = evaluate(node_ckpt, attacks=["pgd:steps=5"], options=EvalOptions(eps="0.1", out=tmp_path / "c", **SMALL))
    assert module.training and all(p.requires_grad for p in module.parameters())
    assert len(from_module) == len(from_file) >= 2  # pgd, worst case (+ the large-eps check)
    for a, b in zip(sorted(from_module, key=key), sorted(from_file, key=key)):
        assert key(a) == key(b)
        assert (a.clean_acc, a.robust_acc, a.n, a.checkpoint_sha256) == (b.clean_acc, b.robust_acc, b.n,
                                                                           b.checkpoint_sha256)


def test_a_foreign_module_and_load_results(tmp_path, digits):
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    x, y = digits.x_train[:512], digits.y_train[:512]
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    records = evaluate(net, dataset="digits", attacks=["fgsm", "pgd:steps=5"],
                       options=EvalOptions(eps="0.05,0.2", out=tmp_path / "r", **SMALL))
    by_attack = {(r.perturbation, r.severity): r for r in records if not r.params.get("sanity")}
    assert {p for p, _ in by_attack} == {"fgsm", "pgd", "worst-case"}
    assert by_attack[("pgd", 0.2)].clean_acc > 0.7  # it learned digits
    assert by_attack[("pgd", 0.2)].robust_acc < by_attack[("pgd", 0.05)].robust_acc  # a real attack
    assert all(r.model == "Sequential" for r in records)

    frame = load_results(tmp_path / "r")
    assert isinstance(frame, pd.DataFrame) and len(frame) == len(records)
    assert set(frame["id"]) == {r.id for r in records}
    row = frame.set_index("id").loc[by_attack[("pgd", 0.2)].id]
    assert row["robust_acc"] == by_attack[("pgd", 0.2)].robust_acc and row["threat"] == "linf"

    examples = load_results(tmp_path / "r", outcomes=True)
    assert len(examples) == sum(r.n for r in records)
    pgd = examples[examples["id"] == by_attack[("pgd", 0.2)].id]
    assert pgd["robust"].mean() == pytest.approx(by_attack[("pgd", 0.2)].robust_acc)
    assert {"index", "clean", "robust", "failed", "nfe", "method", "severity"} <= set(examples.columns)


def test_bad_calls_are_one_line_errors(tmp_path, node_ckpt):
    net = torch.nn.Linear(64, 10)
    with pytest.raises(UserError, match="needs dataset="):
        evaluate(net, attacks=["fgsm"])
    with pytest.raises(UserError, match="knows its dataset"):
        evaluate(node_ckpt, dataset="digits")
    with pytest.raises(UserError, match="results folder not found"):
        load_results(tmp_path / "nothing")
    with pytest.raises(AttributeError):
        zubov_bench.no_such_name  # noqa: B018


def test_checkpoint_path_is_the_eval_command(node_ckpt, tmp_path):
    ours = evaluate(node_ckpt, attacks=["fgsm"], options=EvalOptions(eps="0.1", out=tmp_path / "a", **SMALL))
    theirs = evaluate_checkpoints(node_ckpt, attacks=["fgsm"], eps="0.1", out=tmp_path / "b", **SMALL)
    assert [(r.id, r.robust_acc) for r in ours] == [(r.id, r.robust_acc) for r in theirs]
