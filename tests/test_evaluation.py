"""The evaluation harness end to end on real digits: records, worst case, skip/resume, shards, views."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.cli import main
from zubov_bench.errors import UserError
from zubov_bench.evaluation import GradientView, GradSolver, ResultsStore, evaluate
from zubov_bench.evaluation import runner
from zubov_bench.evaluation.batch import check_threat_model, run_batch
from zubov_bench.evaluation.plan import AttackRequest, eval_subset
from zubov_bench.evaluation.sanity import failures
from zubov_bench.models import SolverError, create_model

SMALL = dict(n_samples=60, batch_size=20, progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def node_run(node_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    records = evaluate([node_ckpt], attacks=["fgsm", "pgd:steps=10"], eps="0.1,0.3", out=out, **SMALL)
    return out, records


def by_name(records, name):
    return [r for r in records if r.perturbation == name and not r.params.get("sanity")]


def test_records_robust_at_most_clean_and_outcomes_stored(node_run, digits):
    out, records = node_run
    store = ResultsStore(out)
    assert {r.id for r in records} <= {r.id for r in store.records()}
    subset = np.sort(eval_subset(len(digits.x_test), 60).numpy())
    clean_accs = {r.clean_acc for r in records if not r.params.get("sanity")}
    assert len(clean_accs) == 1 and clean_accs.pop() > 0.8
    for r in records:
        o = store.outcomes(r.id)
        assert r.robust_acc <= r.clean_acc
        assert not (o["robust"] & ~o["clean"]).any()
        assert r.robust_acc == pytest.approx(o["robust"].mean())
        if not r.params.get("sanity"):
            assert r.n == 60 and np.array_equal(o["index"], subset)
        assert r.suite_version and r.checkpoint_sha256
    pgd = {r.severity: r for r in by_name(records, "pgd")}
    assert pgd[0.3].robust_acc <= 0.1  # an undefended NODE breaks at eps 0.3
    assert all(r.mean_nfe == 40.0 for r in by_name(records, "pgd"))  # rk4:10 = 40 evaluations
    assert failures(records) == []  # no false alarm on an honest model


def test_worst_case_is_the_per_example_union(node_run):
    out, records = node_run
    store = ResultsStore(out)
    for eps in (0.1, 0.3):
        (wc,) = [r for r in by_name(records, "worst-case") if r.severity == eps]
        members = [r for r in records if r.id in wc.members]
        assert {m.perturbation for m in members} == {"fgsm", "pgd"} and wc.grad_solver == "all"
        assert all(wc.robust_acc <= m.robust_acc for m in members)
        expected = np.logical_and.reduce([store.outcomes(m.id)["robust"] for m in members])
        assert np.array_equal(store.outcomes(wc.id)["robust"], expected)


def test_rerun_skips_and_force_recomputes_identically(node_ckpt, node_run, monkeypatch):
    out, records = node_run
    calls = []
    real = runner.run_batch
    monkeypatch.setattr(runner, "run_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    again = evaluate([node_ckpt], attacks=["fgsm"], eps="0.1", out=out, **SMALL)
    assert calls == []
    old = {r.id: r for r in records}
    assert all(old[r.id].robust_acc == r.robust_acc for r in again if r.id in old)
    forced = evaluate([node_ckpt], attacks=["fgsm"], eps="0.1", out=out, force=True, **SMALL)
    assert len(calls) == 3 + 3  # 60 samples in batches of 20: fgsm, and the large-eps PGD check
    assert all(old[r.id].robust_acc == r.robust_acc for r in forced)
    ids = [r.id for r in ResultsStore(out).all_records()]
    assert len(ids) == len(set(ids))


class Crash(Exception):
    pass


def test_resume_after_a_crash_mid_record(node_ckpt, tmp_path, monkeypatch):
    real = runner.run_batch
    calls = []

    def crash_on_third(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3 and not crashed:
            crashed.append(True)
            raise Crash  # the job dies in the middle of the record
        return real(*args, **kwargs)

    crashed = []
    monkeypatch.setattr(runner, "run_batch", crash_on_third)
    with pytest.raises(Crash):
        evaluate([node_ckpt], attacks=["pgd:steps=5"], eps="0.3", out=tmp_path / "a", **SMALL)
    assert ResultsStore(tmp_path / "a").records() == []
    calls.clear()
    resumed = evaluate([node_ckpt], attacks=["pgd:steps=5"], eps="0.3", out=tmp_path / "a", **SMALL)
    assert len(calls) == 1 + 3  # only the missing batch, then the large-eps check
    monkeypatch.setattr(runner, "run_batch", real)
    fresh = evaluate([node_ckpt], attacks=["pgd:steps=5"], eps="0.3", out=tmp_path / "b", **SMALL)
    key = lambda r: r.id  # noqa: E731
    for a, b in zip(sorted(resumed, key=key), sorted(fresh, key=key)):
        assert (a.id, a.robust_acc, a.clean_acc) == (b.id, b.robust_acc, b.clean_acc)


def test_shards_merge_into_exactly_the_single_run(node_ckpt, tmp_path):
    kw = dict(attacks=["fgsm", "pgd:steps=5", "gaussian"], eps=None, **SMALL)
    single = evaluate([node_ckpt], out=tmp_path / "single", **kw)
    first = evaluate([node_ckpt], out=tmp_path / "sharded", shard="0/2", **kw)
    assert all(r.shard == "0/2" for r in first)
    assert ResultsStore(tmp_path / "sharded").records() == []  # nothing complete yet
    evaluate([node_ckpt], out=tmp_path / "sharded", shard="1/2", **kw)
    a, b = ResultsStore(tmp_path / "single"), ResultsStore(tmp_path / "sharded")
    merged = {r.id: r for r in b.records()}
    assert set(merged) == {r.id for r in a.records()} and len(merged) == len(single)
    fields = ("n", "clean_acc", "robust_acc", "n_failed", "mean_nfe", "members", "params", "sanity")
    for r in a.records():
        m = merged[r.id]
        assert [getattr(m, f) for f in fields] == [getattr(r, f) for f in fields]
        for name, array in a.outcomes(r.id).items():
            assert np.array_equal(b.outcomes(r.id)[name], array), name


def test_jobs_run_shards_in_workers_and_give_the_single_run_records(node_ckpt, tmp_path):
    kw = dict(attacks=["fgsm", "pgd:steps=5"], eps="0.1", **SMALL)
    single = evaluate([node_ckpt], out=tmp_path / "single", **kw)
    parallel = evaluate([node_ckpt], out=tmp_path / "jobs", jobs=2, **kw)
    fields = ("id", "n", "clean_acc", "robust_acc", "n_failed", "members", "params", "sanity", "shard")
    assert sorted([getattr(r, f) for f in fields] for r in parallel) == \
        sorted([getattr(r, f) for f in fields] for r in single)
    a, b = ResultsStore(tmp_path / "single"), ResultsStore(tmp_path / "jobs")
    for r in a.records():
        for name, array in a.outcomes(r.id).items():
            assert np.array_equal(b.outcomes(r.id)[name], array), name


@pytest.mark.parametrize("jobs,shard", [(0, None), (2, "0/2")])
def test_bad_jobs_are_refused_before_anything_is_written(node_ckpt, tmp_path, jobs, shard):
    with pytest.raises(UserError, match="--jobs"):
        evaluate([node_ckpt], attacks=["fgsm"], out=tmp_path / "out", jobs=jobs, shard=shard, **SMALL)
    assert not (tmp_path / "out").exists()


def test_ode_with_adaptive_solver_is_attacked_through_both_solvers(trained_node, tmp_path):
    model = create_model("node", trained_node.spec, **{**trained_node.config_dict(), "solver": "dopri5"})
    model.load_state_dict(trained_node.state_dict())
    path = tmp_path / "dopri.pt"
    save_checkpoint(path, model, extra={"seed": 0})
    records = evaluate([str(path)], attacks=["fgsm"], eps="0.2", out=tmp_path / "out",
                       **{**SMALL, "n_samples": 40})
    solvers = {r.grad_solver for r in by_name(records, "fgsm")}
    assert solvers == {"deployed", "rk4:10"}
    unrolled = next(r for r in by_name(records, "fgsm") if r.grad_solver == "rk4:10")
    assert unrolled.sanity["unroll_agreement"]["ok"] and "solver_gap" in unrolled.sanity
    assert all(r.mean_nfe > 0 for r in by_name(records, "fgsm"))
    (wc,) = by_name(records, "worst-case")
    assert len(wc.members) == 2


def test_bpda_view_forward_is_deployed_and_gradient_is_unrolled(trained_node):
    model = create_model("node", trained_node.spec, **{**trained_node.config_dict(), "solver": "dopri5"})
    model.load_state_dict(trained_node.state_dict())
    model.eval()
    x = torch.rand(4, *trained_node.spec.input_shape)

    def value_and_grad(view):
        xx = x.clone().requires_grad_(True)
        out = view(xx)
        (grad,) = torch.autograd.grad(out[:, 0].sum(), xx)
        return out.detach(), grad

    deployed, _ = value_and_grad(GradientView(model, GradSolver()))
    bpda, bpda_grad = value_and_grad(GradientView(model, GradSolver("bpda", 20)))
    _, rk4_grad = value_and_grad(GradientView(model, GradSolver("rk4", 20)))
    assert torch.allclose(bpda, deployed, atol=1e-6)
    assert torch.allclose(bpda_grad, rk4_grad, atol=1e-6)
    assert model.solver.method == "dopri5"  # views never change the deployed model


class FailingModel(torch.nn.Module):
    """Solves fine except for rows whose first pixel is exactly 1 (a solver failure)."""

    def forward(self, x):
        if (x.flatten(1)[:, 0] == 1).any():
            raise SolverError("step limit")
        return torch.stack([x.flatten(1).sum(1), -x.flatten(1).sum(1)], 1)


def test_solver_failures_are_counted_not_robust():
    from zubov_bench.perturbations import create_perturbation

    x = torch.full((6, 4), 0.5)
    x[[1, 4], 0] = 1.0
    y = torch.zeros(6, dtype=torch.long)
    clean = torch.ones(6, dtype=torch.bool)
    noise = create_perturbation("uniform")
    out = run_batch(noise, FailingModel(), FailingModel(), 1e-9, 0, x, y, torch.arange(6), clean,
                    torch.zeros(6, dtype=torch.bool), torch.zeros(6))
    assert out["failed"].tolist() == [False, True, False, False, True, False]
    assert out["robust"].tolist() == [True, False, True, True, False, True]


def test_an_attack_leaving_its_ball_is_refused():
    fake = type("Fake", (), {"name": "fake", "threat": "linf"})()
    x = torch.full((2, 3), 0.5)
    check_threat_model(fake, x, x + 0.1, 0.1)
    with pytest.raises(RuntimeError, match="ball"):
        check_threat_model(fake, x, x + 0.2, 0.1)
    with pytest.raises(RuntimeError, match=r"\[0, 1\]"):
        check_threat_model(fake, x, x + 0.6, 1.0)


def test_noise_keeps_its_grid_unless_named(digits):
    from zubov_bench.perturbations import create_perturbation

    spec = digits.spec
    gaussian = create_perturbation("gaussian")
    assert runner._severities(gaussian, AttackRequest("gaussian", explicit=False), (0.5,), spec) == \
        tuple(gaussian.default_severities(spec))
    assert runner._severities(gaussian, AttackRequest("gaussian"), (0.5,), spec) == (0.5,)
    pgd = create_perturbation("pgd-l2")
    assert runner._severities(pgd, AttackRequest("pgd-l2", explicit=False), None, spec) == spec.eps_l2


def test_cli_eval_prints_summary(node_ckpt, tmp_path):
    result = CliRunner().invoke(main, ["eval", "-c", node_ckpt, "-a", "fgsm", "--eps", "0.2",
                                       "--n-samples", "30", "--out", str(tmp_path / "o"), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "worst-case" in result.output and "fgsm" in result.output
    assert (tmp_path / "o" / "records.jsonl").is_file() and (tmp_path / "o" / "records.csv").is_file()


def test_recheck_recomputes_the_stored_checks_without_attacking(node_ckpt, tmp_path):
    out = tmp_path / "o"
    evaluate([node_ckpt], attacks=["fgsm", "pgd:steps=5"], eps="0.1", out=out, **SMALL)
    store = ResultsStore(out)
    computed = {r.id: r.sanity for r in store.records()}
    assert any(computed.values())
    stale = {i: {"grad_nonzero": {"ok": False, "detail": "from older checks"}} for i in computed}
    store.update_sanity(stale)
    outcomes = sorted(p.name for p in (out / "outcomes").rglob("*"))
    sizes = {k: v for k, v in SMALL.items() if k != "progress"}
    result = CliRunner().invoke(main, ["eval", "-c", node_ckpt, "--recheck", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert {r.id: r.sanity for r in ResultsStore(out).records()} == computed  # the checks, not the stale text
    assert sorted(p.name for p in (out / "outcomes").rglob("*")) == outcomes  # nothing attacked again
    assert [r.id for r in runner.recheck([node_ckpt], out=out, **sizes)] and "worst-case" in result.output


def test_recheck_refuses_a_store_without_the_checkpoint_and_attack_options(node_ckpt, tmp_path):
    for args, message in ((["--out", str(tmp_path / "empty")], "holds no records"),
                          (["--out", str(tmp_path / "o"), "-a", "fgsm", "--force"], "drop --attack, --force")):
        result = CliRunner().invoke(main, ["eval", "-c", node_ckpt, "--recheck", *args])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and message in lines[0], result.output
    assert not (tmp_path / "empty").exists() and not (tmp_path / "o").exists()


BAD_INPUTS = [
    (["--eps", "-0.1"], "finite and > 0"),
    (["--eps", "nan"], "finite and > 0"),
    (["--eps", "abc"], "bad --eps"),
    (["--eps", ""], "--eps is empty"),
    (["-a", "pgd:steps=0"], "steps must be >= 1"),
    (["-a", "pgd:bogus=1"], "unknown parameter"),
    (["-a", "pgdd"], "unknown perturbation"),
    (["-a", "transfer"], "--transfer-from"),
    (["--batch-size", "0"], "--batch-size"),
    (["--n-samples", "-5"], "--n-samples"),
    (["--n-samples", "ten"], "--n-samples"),
    (["--shard", "2/2"], "--shard"),
    (["--shard", "x"], "--shard"),
    (["--grad-solver", "rk4:0"], "--grad-solver"),
    (["--grad-solver", "euler"], "--grad-solver"),
    (["--transfer-from", "/nonexistent.pt"], "not found"),
]


@pytest.mark.parametrize("args,message", BAD_INPUTS, ids=[" ".join(a) for a, _ in BAD_INPUTS])
def test_cli_rejects_bad_input_with_one_line(node_ckpt, tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(main, ["eval", "-c", node_ckpt, "--out", str(out), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], result.output
    assert not out.exists()


def test_cli_rejects_bad_checkpoint_and_output(node_ckpt, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    for args in (["-c", str(tmp_path / "missing.pt")], ["-c", str(tmp_path / "garbage.pt")],
                 ["-c", str(tmp_path / "none*.pt")], ["-c", node_ckpt, "--out", str(tmp_path / "file")], []):
        result = CliRunner().invoke(main, ["eval", *args])
        assert result.exit_code == 2 and result.output.startswith("error:"), (args, result.output)


def test_transfer_source_on_another_dataset_is_refused(node_ckpt, tmp_path):
    from zubov_bench.data import load_dataset

    toy = create_model("node", load_dataset("toy2d").spec, d=2)
    save_checkpoint(tmp_path / "toy.pt", toy, extra={})
    result = CliRunner().invoke(main, ["eval", "-c", node_ckpt, "-a", "transfer", "--transfer-from",
                                       str(tmp_path / "toy.pt"), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "trained on toy2d" in result.output, result.output
    assert not (tmp_path / "o").exists()


def test_dataclass_replace_keeps_ids_stable():
    """Sanity results are stored on records; they must not change the record's identity."""
    from zubov_bench.records import Record

    r = Record("m", "m", "d", "c", "s", 0, "pgd", "linf", 0.1, 0)
    assert dataclasses.replace(r, sanity={"x": {"ok": False}}).id == r.id
