"""The paper protocol (issue 18, item 4): each baseline's own paper attack beside the strict worst case."""
from __future__ import annotations

import pytest
import torch

from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.evaluation import ResultsStore, evaluate
from zubov_bench.evaluation.paper_protocol import (PaperAttack, eps_scale, paper_gap, paper_protocol_accuracy,
                                                   protocol_of)
from zubov_bench.evaluation.worst_case import is_member
from zubov_bench.models import MODELS, create_model
from zubov_bench.models.paper_protocol import PaperProtocol
from zubov_bench.records import Record
from zubov_bench.reports.render import render
from zubov_bench.reports.tables import build_tables

from conftest import quick_train

SMALL = dict(n_samples=40, batch_size=40, progress=False)


def test_baselines_declare_their_papers_protocol():
    declared = {name for name, cls in MODELS.items() if protocol_of(cls) is not None}
    assert {"sodef", "lyanet", "tisode"} <= declared
    assert not {"node", "zubov", "fxts"} & declared  # fxts does not inherit LyaNet's paper
    assert protocol_of(MODELS.get("lyanet")).eps_units == "normalised"
    with pytest.raises(ValueError):
        PaperProtocol("pgd", eps_units="percent")


def test_normalised_eps_becomes_eps_times_std():
    assert eps_scale(PaperProtocol("pgd"), (0.3,)) == 1.0
    assert eps_scale(PaperProtocol("pgd", eps_units="normalised"), (0.3,)) == pytest.approx(0.3)
    assert eps_scale(PaperProtocol("pgd", eps_units="normalised"), (0.5, 0.2, 0.4)) == pytest.approx(0.2)


def test_paper_attack_stays_inside_the_scaled_ball(trained_node, digits):
    attack = PaperAttack(PaperProtocol("pgd", {"steps": 5}, "normalised"), (0.25,))
    x, y = digits.x_test[:40], digits.y_test[:40]
    x_adv = attack.perturb(trained_node, x, y, 0.2, torch.Generator().manual_seed(0), None)
    dist = (x_adv - x).abs().flatten(1).amax(1)
    assert float(dist.max()) <= 0.2 * 0.25 + 1e-6
    assert float(dist.max()) > 0.2 * 0.25 * 0.9  # it did attack, up to the scaled radius
    assert attack.settings()["protocol"] == "paper" and attack.name == "pgd"


@pytest.fixture(scope="module")
def paper_eval(digits, node_ckpt, tmp_path_factory):
    torch.manual_seed(0)
    tisode = quick_train(create_model("tisode", digits.spec), digits, epochs=1)
    ckpt = tmp_path_factory.mktemp("ckpt") / "tisode.pt"
    save_checkpoint(ckpt, tisode, extra={"model": "tisode", "dataset": "digits", "seed": 0})
    out = tmp_path_factory.mktemp("eval")
    notes = []
    records = evaluate([str(ckpt), node_ckpt], attacks=["paper", "pgd:steps=5"], eps="0.1", out=str(out),
                       grad_solver="deployed", log=notes.append, **SMALL)
    return str(ckpt), records, notes, ResultsStore(out).records()


def test_eval_paper_runs_only_declared_protocols_and_keeps_them_out_of_the_worst_case(paper_eval, node_ckpt):
    ckpt, records, notes, stored = paper_eval
    paper = [r for r in stored if r.params.get("protocol") == "paper"]
    assert [(r.model, r.perturbation, r.grad_solver, r.severity) for r in paper] == \
        [("tisode", "fgsm", "deployed", 0.1)]
    assert any("node declares no paper protocol" in n for n in notes)
    assert not is_member(paper[0])
    worst = [r for r in stored if r.perturbation == "worst-case" and r.checkpoint == ckpt
             and r.params.get("n_samples") == 40]
    assert worst and paper[0].id not in worst[0].members
    assert paper_protocol_accuracy(stored, ckpt, 0.1) == paper[0].robust_acc
    assert paper_gap(stored, ckpt, 0.1) == pytest.approx(paper[0].robust_acc - worst[0].robust_acc)
    assert paper_protocol_accuracy(stored, node_ckpt, 0.1) is None


def test_table_shows_paper_protocol_and_gap(paper_eval):
    _, _, _, stored = paper_eval
    table, = build_tables(stored, worst_case=True)
    labels = [(c.group, c.label) for c in table.columns]
    assert ("Paper protocol", "ε = 0.1") in labels and ("Paper protocol", "gap ε = 0.1") in labels
    assert "Paper protocol" in render([table], "md")


def _record(sha, perturbation, acc, protocol=None, n=100):
    params = {"n_samples": n, **({"protocol": protocol} if protocol else {})}
    return Record(model="sodef", method="sodef", dataset="digits", checkpoint=f"{sha}.pt", checkpoint_sha256=sha,
                  train_seed=0, perturbation=perturbation, threat="linf", severity=0.1, seed=0, n=n,
                  clean_acc=0.9, robust_acc=acc, params=params)


def test_gap_column_equals_paper_minus_worst_case_on_hand_made_records():
    records = [_record("a", "pgd", 0.40), _record("a", "worst-case", 0.30), _record("a", "pgd", 0.75, "paper"),
               _record("b", "pgd", 0.50), _record("b", "worst-case", 0.45), _record("b", "pgd", 0.65, "paper")]
    table, = build_tables(records, worst_case=True)
    by_label = {c.label: table.cell("sodef", c) for c in table.columns}
    assert by_label["ε = 0.1"].values == {"a": 0.75, "b": 0.65}
    assert by_label["gap ε = 0.1"].values == pytest.approx({"a": 0.45, "b": 0.20})
    assert by_label["gap ε = 0.1"].mean == pytest.approx(0.325)
    # the paper record never lowers a strict cell: PGD's cell stays the strict 0.40/0.50
    assert by_label["PGD"].values == {"a": 0.40, "b": 0.50}
