"""The six sanity checks: unit cases on hand-made records, and a masked model that must trip them."""
from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.evaluation import evaluate
from zubov_bench.evaluation.batch import input_gradient_norms
from zubov_bench.evaluation.sanity import GradStats, failures, run_checks
from zubov_bench.evaluation.solver_view import UnrollChoice
from zubov_bench.evaluation.summary import format_summary
from zubov_bench.models import MODELS, register_model
from zubov_bench.models.base import BenchModel
from zubov_bench.records import Record


def rec(perturbation, severity, robust, clean=0.9, threat="linf", grad_solver="deployed", n=500, **params):
    return Record("m", "m", "digits", "c.pt", "sha", 0, perturbation, threat, severity, 0,
                  grad_solver=grad_solver, n=n, clean_acc=clean, robust_acc=robust,
                  params={"n_samples": n, **params})


def failed_checks(records, **kw) -> dict[str, set[str]]:
    result = run_checks(records, **kw)
    return {r.perturbation + "@" + r.grad_solver + f"@{r.severity:g}":
            {c for c, v in result[r.id].items() if not v["ok"]} for r in records}


def test_honest_records_pass_every_check():
    records = [rec("fgsm", 0.1, 0.5), rec("fgsm", 0.3, 0.2), rec("pgd", 0.1, 0.4), rec("pgd", 0.3, 0.01),
               rec("square", 0.1, 0.6, grad_solver="none"), rec("pgd", 1.0, 0.0, sanity="large-eps")]
    stats = {"deployed": GradStats(1.0, 200, 0.1)}
    assert all(not f for f in failed_checks(records, grad_stats=stats).values())


def test_each_violation_is_flagged():
    records = [rec("pgd", 0.1, 0.3), rec("pgd", 0.3, 0.5),  # 1: rises with eps
               rec("pgd", 1.0, 0.4, sanity="large-eps"),  # 1: far from 0 at eps 1
               rec("fgsm", 0.1, 0.1),  # 2: single step beats PGD at 0.1
               rec("square", 0.3, 0.2, grad_solver="none"),  # 3: black box beats PGD at 0.3
               rec("fgsm", 0.3, 0.95)]  # 4: robust above clean
    failed = failed_checks(records, grad_stats={"deployed": GradStats(0.4, 200, 0.0)})
    assert {"eps_monotone", "whitebox_vs_blackbox", "grad_nonzero"} <= failed["pgd@deployed@0.3"]
    assert {"large_eps", "grad_nonzero"} <= failed["pgd@deployed@1"]
    assert "iterative_vs_single" in failed["pgd@deployed@0.1"]
    assert failed["square@none@0.3"] == {"whitebox_vs_blackbox"}
    assert "robust_le_clean" in failed["fgsm@deployed@0.3"]


def test_solver_gap_and_unroll_agreement():
    records = [rec("pgd", 0.1, 0.40), rec("pgd", 0.1, 0.30, grad_solver="rk4:20"),
               rec("fgsm", 0.1, 0.50), rec("fgsm", 0.1, 0.51, grad_solver="rk4:20")]
    unrolls = {20: UnrollChoice(20, 0.97, False, {10: 0.9, 20: 0.97})}
    failed = failed_checks(records, unrolls=unrolls, solver_text="dopri5")
    assert "solver_gap" in failed["pgd@deployed@0.1"] and "solver_gap" in failed["pgd@rk4:20@0.1"]
    assert "solver_gap" not in failed["fgsm@rk4:20@0.1"]
    assert "unroll_agreement" in failed["fgsm@rk4:20@0.1"]


def test_worst_case_collects_member_failures():
    a, b = rec("pgd", 0.1, 0.3), rec("square", 0.1, 0.1, grad_solver="none")
    wc = rec("worst-case", 0.1, 0.1, grad_solver="all")
    wc.members = [a.id, b.id]
    result = run_checks([a, b, wc])
    assert not result[wc.id]["whitebox_vs_blackbox"]["ok"]


def test_a_margin_loss_attack_reaches_a_saturated_softmax_and_passes_grad_nonzero():
    ce, dlr = rec("pgd", 0.1, 0.3), rec("pgd", 0.1, 0.2, loss="dlr")
    aa = rec("autoattack", 0.1, 0.2)  # standard: APGD-T and FAB-T follow logit margins
    aa_ce = rec("autoattack", 0.1, 0.25, version="custom", attacks=["apgd-ce"])
    wc = rec("worst-case", 0.1, 0.2, grad_solver="all")
    wc.members = [ce.id, dlr.id]
    records = [ce, dlr, aa, aa_ce, wc]
    saturated = run_checks(records, grad_stats={"deployed": GradStats(0.8, 200, 0.01, saturated=0.2)})
    assert [saturated[r.id]["grad_nonzero"]["ok"] for r in records] == [False, True, True, False, True]
    assert "100.0% reached" in saturated[dlr.id]["grad_nonzero"]["detail"]
    assert saturated[wc.id]["grad_nonzero"]["detail"].startswith("pgd (margin loss): [deployed] ")
    # a blocked gradient (no margin gradient either) fails every member, and so the worst case
    blocked = run_checks(records, grad_stats={"deployed": GradStats(0.8, 200, 0.01)})
    assert not any(blocked[r.id]["grad_nonzero"]["ok"] for r in records)
    # a margin loss covers only the saturated samples, not the blocked ones beside them
    partly = run_checks(records, grad_stats={"deployed": GradStats(0.8, 200, 0.01, saturated=0.1)})
    assert not partly[dlr.id]["grad_nonzero"]["ok"]


def test_the_details_of_tied_checks_do_not_depend_on_where_the_store_lives():
    """Record ids hash a transfer source's path, so two clones order a store's records differently;
    when attacks tie, the member a detail names must not follow that order."""
    def worst_case_details(source_dir):
        members = [rec("pgd", 0.3, 0.0), rec("square", 0.3, 0.0, grad_solver="none"),
                   rec("transfer", 0.3, 0.0, grad_solver="none", source=f"{source_dir}/node.pt")]
        wc = rec("worst-case", 0.3, 0.0, grad_solver="all")
        wc.members = sorted(m.id for m in members)  # as worst_case_record stores them
        records = sorted(members, key=lambda r: r.id) + [wc]
        return {c: v["detail"] for c, v in run_checks(records)[wc.id].items()}

    details = [worst_case_details(f"/clone{i}/results") for i in range(40)]
    assert "whitebox_vs_blackbox" in details[0]
    assert all(d == details[0] for d in details)


# --- a deliberately masked model ------------------------------------------------------------
@dataclass
class MaskedConfig:
    levels: int = 2


class HardStepModel(BenchModel):
    """A linear classifier on quantised pixels: round() has zero gradient almost everywhere."""

    Config = MaskedConfig
    description = "test only: gradient-masked by a hard quantisation step"

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg)
        self.head = nn.Linear(spec.input_dim, spec.num_classes)

    def forward(self, x):
        levels = self.cfg.levels
        return self.head(torch.round(x * levels).div(levels).flatten(1) * 4 - 2)

    def training_loss(self, x, y):
        loss = F.cross_entropy(self(x), y)
        return loss, {"cls": float(loss.detach())}


@pytest.fixture(scope="module")
def masked_ckpt(digits, tmp_path_factory):
    register_model("test-hard-step")(HardStepModel)
    torch.manual_seed(0)
    model = HardStepModel(digits.spec, MaskedConfig())
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    for _ in range(60):
        loss, _ = model.training_loss(digits.x_train, digits.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    path = tmp_path_factory.mktemp("masked") / "masked.pt"
    save_checkpoint(path, model.eval(), extra={"seed": 0})
    yield str(path)
    MODELS._items.pop("test-hard-step", None)  # keep the global registry clean for other tests


def test_masked_model_trips_the_sanity_checks(masked_ckpt, tmp_path):
    records = evaluate([masked_ckpt], attacks=["fgsm", "pgd:steps=10", "square:n_queries=300"], eps="0.3",
                       out=tmp_path, n_samples=60, batch_size=30, progress=False, log=lambda m: None)
    failed = {check for check, _ in failures(records)}
    assert records[0].clean_acc > 0.8
    pgd = next(r for r in records if r.perturbation == "pgd" and not r.params.get("sanity"))
    square = next(r for r in records if r.perturbation == "square")
    assert pgd.robust_acc >= pgd.clean_acc - 0.1  # gradients see nothing (random start aside) ...
    assert square.robust_acc < pgd.robust_acc - 0.3  # ... a black-box attack does
    assert {"grad_nonzero", "large_eps", "whitebox_vs_blackbox"} <= failed
    summary = format_summary(records)
    assert "sanity warnings" in summary and "!" in summary


def test_gradient_norms_tell_a_saturated_softmax_from_a_blocked_gradient():
    torch.manual_seed(0)
    x, y = torch.rand(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    weight = torch.randn(4, 3)
    confident = lambda v: 1e4 * (v @ weight) + 1e5 * F.one_hot(y, 3)  # noqa: E731  margin ~1e5: CE rounds to 0
    blocked = lambda v: (v @ weight).detach() + 0 * v.sum()  # noqa: E731  no gradient reaches the input
    ce, margin = input_gradient_norms(confident, x, y)
    assert (ce == 0).all() and (margin > 0).all()
    ce, margin = input_gradient_norms(blocked, x, y)
    assert (ce == 0).all() and (margin == 0).all()
    ce, margin = input_gradient_norms(lambda v: v @ weight, x, y)
    assert (ce > 0).all() and (margin > 0).all()


def test_grad_nonzero_names_a_saturated_softmax_and_still_fails():
    records = [rec("pgd", 0.1, 0.4)]
    saturated = run_checks(records, grad_stats={"deployed": GradStats(0.95, 200, 0.01, saturated=0.05)})
    blocked = run_checks(records, grad_stats={"deployed": GradStats(0.95, 200, 0.01)})
    for result in (saturated, blocked):
        assert result[records[0].id]["grad_nonzero"]["ok"] is False
    assert "saturated softmax" in saturated[records[0].id]["grad_nonzero"]["detail"]
    assert "saturated" not in blocked[records[0].id]["grad_nonzero"]["detail"]
