"""Randomized smoothing: the certificate's arithmetic, seeding, the store and CLI, and its soundness
against a strong L2 attack on the smoothed classifier (which catches a certificate 2x too large).
The Lyapunov certificate: no certified example fooled by L2 PGD (one that ignores the stem's
Lipschitz constant is), each sound part checked on its own, the CLI and its refusals."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import binom, norm

from conftest import quick_train
from zubov_bench.checkpoint import load_checkpoint, save_checkpoint
from zubov_bench.cli import main
from zubov_bench.evaluation import ResultsStore
from zubov_bench.evaluation.certify import (ABSTAIN, CERTIFIED_THREAT, SmoothingSettings, allowed_failures,
                                            certify, example_noise, fooled_certificates, lower_confidence_bound)
from zubov_bench.evaluation.lyapunov_certificate import fooled_lyapunov_certificates, lyapunov_certify
from zubov_bench.evaluation.plan import eval_subset
from zubov_bench.models import create_model, list_models
from zubov_bench.models.lipschitz import LipschitzBound

SIGMA = 0.25


@pytest.fixture(scope="module")
def noisy_node(digits):
    """A node trained with Gaussian noise at the smoothing sigma: `--set noise_aug=1 --set noise_sigmas=0.25`."""
    torch.manual_seed(0)
    model = create_model("node", digits.spec, noise_aug=1.0, noise_sigmas="0.25")
    return quick_train(model, digits, epochs=6)


@pytest.fixture(scope="module")
def noisy_ckpt(noisy_node, tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "node-noise.pt"
    save_checkpoint(path, noisy_node, extra={"seed": 0})
    return str(path)


def test_clopper_pearson_lower_bound_is_exact():
    n, alpha = 1000, 0.001
    k = np.array([0, 1, 500, 990, 1000])
    p = lower_confidence_bound(k, n, alpha)
    assert p[0] == 0.0
    # P(X >= k | p_lower) = alpha: the one-sided Clopper-Pearson definition
    assert 1 - binom.cdf(k[1:] - 1, n, p[1:]) == pytest.approx(alpha, rel=1e-6)
    assert np.all(np.diff(p) > 0)


def test_noise_is_a_function_of_seed_index_and_draw():
    a = example_noise(0, 7, 1, 1500, (1, 8, 8))
    assert torch.equal(example_noise(0, 7, 1, 20, (1, 8, 8)), a[:20])  # more draws extend, never reshuffle
    assert not torch.equal(example_noise(0, 8, 1, 20, (1, 8, 8)), a[:20])
    assert not torch.equal(example_noise(1, 7, 1, 20, (1, 8, 8)), a[:20])
    assert not torch.equal(example_noise(0, 7, 0, 20, (1, 8, 8)), a[:20])  # selection vs estimation


def test_certificate_arithmetic_and_batch_independence(noisy_node, digits):
    index = eval_subset(len(digits.x_test), 12)
    x, y = digits.x_test[index], digits.y_test[index]
    settings = SmoothingSettings(SIGMA, n0=50, n=300, alpha=0.01)
    out = certify(noisy_node, x, y, index, settings, seed=3, batch_size=1000)
    small = certify(noisy_node, x, y, index, settings, seed=3, batch_size=37)
    for key in out:
        assert np.array_equal(out[key], small[key]), key
    certified = out["prediction"] != ABSTAIN
    assert certified.any()
    assert np.all(out["p_lower"][certified] > 0.5) and np.all(out["p_lower"][~certified] <= 0.5)
    assert np.allclose(out["radius"][certified], SIGMA * norm.ppf(out["p_lower"][certified]))
    assert np.all(out["radius"][~certified] == 0)
    assert np.array_equal(out["correct"], certified & (out["prediction"] == y.numpy()))
    other = certify(noisy_node, x, y, index, settings, seed=4, batch_size=1000)
    assert not np.array_equal(other["p_lower"], out["p_lower"])


def test_certified_predictions_survive_pgd_on_the_smoothed_classifier(noisy_node, digits):
    """Soundness: no certified example is fooled inside its radius beyond the alpha failure rate,
    while the same attack on radii 2x too large (a broken certificate) fools many."""
    index = eval_subset(len(digits.x_test), 30)
    x, y = digits.x_test[index], digits.y_test[index]
    settings = SmoothingSettings(SIGMA, n0=100, n=1000, alpha=0.001)
    cert = certify(noisy_node, x, y, index, settings, seed=0)
    n_certified = int((cert["correct"] & (cert["radius"] > 0)).sum())
    assert n_certified >= 15
    allowed = allowed_failures(n_certified, settings.alpha)
    fooled = fooled_certificates(noisy_node, x, y, index, cert, settings, seed=11)
    assert fooled.sum() <= allowed, f"{fooled.sum()} of {n_certified} certificates broken (allowed {allowed})"
    broken = {**cert, "radius": cert["radius"] * 2}
    fooled_broken = fooled_certificates(noisy_node, x, y, index, broken, settings, seed=11)
    assert fooled_broken.sum() > allowed + 3


def test_certify_cli_writes_records_beside_eval(noisy_ckpt, digits, tmp_path):
    out = tmp_path / "results"
    args = ["certify", "-c", noisy_ckpt, "--sigma", "0.25", "--n0", "20", "--n", "100", "--n-samples", "30",
            "--batch-size", "500", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = [r for r in ResultsStore(out).records() if r.threat == CERTIFIED_THREAT]
    assert sorted(r.severity for r in records) == [0.0, 0.25, 0.5, 1.0]
    accs = [r.robust_acc for r in sorted(records, key=lambda r: r.severity)]
    assert accs == sorted(accs, reverse=True) and accs[0] > 0.5
    outcome = ResultsStore(out).outcomes(records[0].id)
    assert {"radius", "prediction", "p_lower", "index", "clean", "robust"} <= set(outcome)
    assert np.array_equal(outcome["index"], np.sort(eval_subset(len(digits.x_test), 30).numpy()))  # eval's subset
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "already certified" in again.output
    table = CliRunner().invoke(main, ["table", "--results", str(out)])
    assert table.exit_code == 0, table.output
    assert "certified" in table.output.lower()


def test_certificates_get_the_record_checks_and_attacks_keep_their_gradient_checks(noisy_ckpt, tmp_path):
    """A certificate added to an evaluated store is checked as `eval` checks its records (ε monotone;
    smoothing certifies the smoothed classifier, so not robust <= clean), and the attack records keep
    check 5, which needs the model."""
    from zubov_bench.evaluation import evaluate

    out = tmp_path / "results"
    evaluate([noisy_ckpt], attacks=["pgd-l2:steps=5"], eps="0.25", out=out, n_samples=30, batch_size=30,
             progress=False, log=lambda m: None)
    before = {r.id: r.sanity for r in ResultsStore(out).records()}
    result = CliRunner().invoke(main, ["certify", "-c", noisy_ckpt, "--n0", "20", "--n", "100", "--n-samples",
                                       "30", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    after = ResultsStore(out).records()
    certificates = [r for r in after if r.threat == CERTIFIED_THREAT]
    assert certificates and all(r.sanity["eps_monotone"]["ok"] for r in certificates if r.severity > 0)
    attacks = [r for r in after if r.id in before and r.perturbation == "pgd-l2"]
    assert attacks and all(r.sanity == before[r.id] for r in attacks)


@pytest.mark.parametrize("extra,message", [
    (["--sigma", "-1"], "--sigma must be a positive number"),
    (["--n", "0"], "--n must be an integer >= 1"),
    (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    (["--radii", "a,b"], "--radii must be comma-separated numbers"),
    (["--method", "lyapunov"], "--method lyapunov cannot certify"),
    (["--method", "lyapunov", "--flow-steps", "x"], "--flow-steps must be an integer"),
    (["--method", "ibp"], "unknown --method"),
])
def test_certify_bad_input_is_one_line(noisy_ckpt, tmp_path, extra, message):
    result = CliRunner().invoke(main, ["certify", "-c", noisy_ckpt, "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {result.output.strip()[7:]}"]
    assert message in result.output
    assert not (tmp_path / "o").exists()


# --- the deterministic Lyapunov certificate (evaluation/lyapunov_certificate.py) ----------------------
# A digits Zubov-Net whose z(0) start inside their PRoAs, which the certificate needs: the quick
# preset's until its recipe started every z(0) outside all PRoAs (tests/data/README.md; training
# one here takes minutes on 2 cores)
CERTIFIABLE_ZUBOV = Path(__file__).resolve().parent / "data" / "zubov-digits-z0-inside.pt"


@pytest.fixture(scope="module")
def certifiable_zubov():
    model, meta = load_checkpoint(CERTIFIABLE_ZUBOV)
    model.eval().requires_grad_(False)
    return model


@pytest.fixture(scope="module")
def zubov_examples(certifiable_zubov, digits):
    index = eval_subset(len(digits.x_test), 16)
    x, y = digits.x_test[index], digits.y_test[index]
    return x, y, lyapunov_certify(certifiable_zubov, x, y, flow_samples=4, flow_steps=3)


def test_lyapunov_certificates_survive_pgd_and_a_broken_one_does_not(certifiable_zubov, zubov_examples, monkeypatch):
    """Soundness: L2 PGD with restarts at each certified radius fools none (deterministic: none at all);
    the same certificate with the stem's Lipschitz constant replaced by 0.01 is caught."""
    from zubov_bench.evaluation import lyapunov_certificate as lc

    x, y, cert = zubov_examples
    assert cert["correct"].sum() >= 4
    assert np.all(cert["radius"][cert["prediction"] < 0] == 0)
    fooled = fooled_lyapunov_certificates(certifiable_zubov, x, y, cert, steps=20, restarts=3)
    assert fooled.sum() == 0
    monkeypatch.setattr(lc, "stem_lipschitz", lambda model: LipschitzBound(0.01))
    broken = lc.lyapunov_certify(certifiable_zubov, x, y, flow_samples=4, flow_steps=3)
    assert broken["correct"].sum() >= 4
    assert fooled_lyapunov_certificates(certifiable_zubov, x, y, broken, steps=10, restarts=1).sum() >= 1


def test_the_feature_ball_lies_inside_the_proa(certifiable_zubov, zubov_examples):
    """Part (b), which is sound: V_p < c on B(z0, r); ignoring the network part of grad V leaves the PRoA."""
    from zubov_bench.evaluation import lyapunov_certificate as lc

    x, y, cert = zubov_examples
    rows = np.flatnonzero(cert["feature_radius_sound"] > 0)
    pred = torch.from_numpy(cert["prediction"][rows])
    z0 = certifiable_zubov.features(x[rows]).double()
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(64, *z0.shape, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=2, keepdim=True)
    lyap = copy.deepcopy(certifiable_zubov.lyap).double()

    def largest_v(radius):
        """max of V_p on the sphere of `radius` around z0: best of random points and projected ascent."""
        r = torch.from_numpy(radius)[:, None]
        points = (z0[None] + r[None] * dirs).reshape(-1, z0.shape[1])
        best = lyap(points, pred.repeat(64)).reshape(64, -1).max(0).values.detach()
        u = dirs[0].clone()
        for _ in range(30):
            u.requires_grad_(True)
            v = lyap(z0 + r * u / u.norm(dim=1, keepdim=True), pred)
            grad, = torch.autograd.grad(v.sum(), u)
            best = torch.maximum(best, v.detach())
            u = (u.detach() / u.detach().norm(dim=1, keepdim=True) + 0.3 * grad / grad.norm(dim=1, keepdim=True))
        return best

    level = certifiable_zubov.cfg.level
    assert torch.all(largest_v(cert["feature_radius_sound"][rows]) < level)
    with torch.no_grad():
        v0 = lyap(z0, pred).numpy()
        dist0 = (z0 - lyap.equilibria[pred]).norm(dim=1).numpy()
        lip = lc.core_lipschitz(lyap).numpy()[pred.numpy()]
    too_large = lc.feature_radius(v0, dist0, 0 * lip, level, lyap.cfg.quad)
    assert torch.any(largest_v(too_large) >= level)


def test_the_local_gradient_bound_never_loses_to_the_global_one(zubov_examples):
    """Part (b): the certified feature radius is the larger of the two sound radii, and the local one
    (interval bounds over the ball) is at least the global one wherever either certifies."""
    _, _, cert = zubov_examples
    local, global_ = cert["feature_radius_local"], cert["feature_radius_global"]
    assert np.all(local >= global_) and np.all(cert["feature_radius_sound"] == np.maximum(local, global_))
    assert np.any(local > 1.5 * global_)  # and it is tighter, or it would not be worth its cost


def test_local_core_gradient_bounds_the_gradient_on_its_ball(certifiable_zubov, zubov_examples):
    """The interval bound of grad core_p holds at random points of the ball it was computed for; the
    bound of a ball 100 times smaller is exceeded on it (so the check can fail)."""
    from zubov_bench.evaluation.lyapunov_certificate import local_core_gradient

    x, _, cert = zubov_examples
    lyap = copy.deepcopy(certifiable_zubov.lyap).double()
    pred = torch.from_numpy(np.where(cert["prediction"] >= 0, cert["prediction"], 0))
    zc0 = certifiable_zubov.features(x).double() - lyap.equilibria[pred]
    radius = torch.full((len(x),), 0.5, dtype=torch.float64)
    bound = local_core_gradient(lyap, zc0, pred, radius)
    g = torch.Generator().manual_seed(0)
    dirs = torch.randn(128, *zc0.shape, generator=g, dtype=torch.float64)
    dirs = dirs / dirs.norm(dim=2, keepdim=True) * torch.rand(128, len(x), 1, generator=g, dtype=torch.float64)
    zc = (zc0[None] + 0.5 * dirs).reshape(-1, zc0.shape[1]).requires_grad_(True)
    cls = pred.repeat(128)
    core = lyap(zc + lyap.equilibria[cls], cls) - lyap.cfg.quad * zc.pow(2).sum(1)
    grad, = torch.autograd.grad(core.sum(), zc)
    largest = grad.norm(dim=1).reshape(128, -1).max(0).values
    assert torch.all(largest <= bound * (1 + 1e-9))
    assert torch.any(largest > local_core_gradient(lyap, zc0, pred, radius / 100))


def test_core_lipschitz_bounds_the_gradient_of_v(certifiable_zubov, digits):
    from zubov_bench.evaluation.lyapunov_certificate import core_lipschitz

    lyap = copy.deepcopy(certifiable_zubov.lyap).double()
    bound = core_lipschitz(lyap)
    k, d = lyap.equilibria.shape
    z0 = certifiable_zubov.features(digits.x_test[:50]).double()
    points = torch.cat([z0, z0 + torch.randn_like(z0), lyap.equilibria + torch.randn(k, d, dtype=torch.float64)])
    for cls in range(k):
        z = points.clone().requires_grad_(True)
        c = torch.full((len(z),), cls)
        core = lyap(z, c) - lyap.cfg.quad * (z - lyap.equilibria[cls]).pow(2).sum(1)
        grad, = torch.autograd.grad(core.sum(), z)
        assert float(grad.norm(dim=1).max()) <= float(bound[cls])


def test_proas_are_proven_disjoint_only_when_their_balls_are(certifiable_zubov):
    from zubov_bench.evaluation.lyapunov_certificate import disjoint_classes, model_facts

    eq = certifiable_zubov.equilibria.detach().double()
    assert model_facts(certifiable_zubov)["disjointness"] == "proven"
    assert disjoint_classes(eq, 1.0, certifiable_zubov.lyap.cfg.quad).all()
    assert not disjoint_classes(eq, 1.0, 0.001).any()  # balls of radius sqrt(1000) overlap
    # inside a PRoA every other V_j is >= c (sampled check of what the balls prove)
    lyap = copy.deepcopy(certifiable_zubov.lyap).double()
    points = eq.repeat_interleave(200, 0) + 0.2 * torch.randn(2000, eq.shape[1], dtype=torch.float64)
    v = lyap(points)
    inside = v < 1.0
    assert inside.any() and torch.all(inside.sum(1) <= 1)


QUICK_STABLE = Path(__file__).resolve().parents[1] / "results/quick/checkpoints/stable-digits-s0/model.pt"


def test_stable_gets_the_certificate_of_its_projected_decay(digits):
    """`stable` (traits decay_by_construction, nearest_equilibrium_head): c is chosen so the PRoAs are
    proven disjoint, the field's V' <= -alpha V holds at sampled states (what makes (d) a proof for the
    exact flow), the RK4 flow from balls inside a PRoA stays there and predicts its class, and an
    example whose z(0) lies outside every PRoA abstains."""
    from zubov_bench.evaluation import lyapunov_certificate as lc

    model, _ = load_checkpoint(QUICK_STABLE)
    model.eval().requires_grad_(False)
    facts = lc.model_facts(model)
    assert facts["flow_invariance"] == lc.FLOW_EXACT_PROVEN and facts["disjointness"] == "proven"
    level = lc.certificate_level(model)
    assert lc.disjoint_classes(model.equilibria.double(), level, model.lyap.cfg.quad).all()
    assert not lc.disjoint_classes(model.equilibria.double(), level * 1.01, model.lyap.cfg.quad).all()
    eq = model.equilibria.detach()
    g = torch.Generator().manual_seed(0)
    z = torch.cat([model.features(digits.x_test[:40]), eq.repeat(4, 1) + torch.randn(40, eq.shape[1], generator=g)])
    v, grad_v = model.odefunc.field.potential_and_grad(z)
    assert torch.all((grad_v * model.vector_field(z)).sum(1) <= -model.cfg.alpha * v + 1e-4 * (1 + v))
    twin = lc._float64_copy(model)
    cls = torch.arange(len(eq)).repeat(3)
    u = torch.randn(len(cls), eq.shape[1], generator=g, dtype=torch.float64)
    zc0 = 0.02 * u / u.norm(dim=1, keepdim=True)
    v0 = twin.lyapunov(twin.equilibria[cls] + zc0, cls).numpy()
    radius = lc.local_feature_radius(twin.lyap, zc0, cls, v0, level, lc.core_lipschitz(twin.lyap)[cls].numpy())
    assert np.all(radius > 0.01)  # the ball of (b) around a point near e_p, inside PRoA_p
    assert lc.check_flow(twin, twin.equilibria[cls] + zc0, cls, torch.from_numpy(radius), level, 4, 3).all()
    x, y = digits.x_test[:8], digits.y_test[:8]
    cert = lc.lyapunov_certify(model, x, y, flow_samples=2, flow_steps=1)
    outside = cert["v0"] >= level
    assert np.all(cert["prediction"][outside] == -1) and np.all(cert["radius"][outside] == 0)


def test_lyapunov_certify_cli_refuses_other_models_and_writes_records(noisy_ckpt, tmp_path):
    from zubov_bench.evaluation.lyapunov_certificate import FLOW_NUMERIC, LYAPUNOV_LABEL

    refused = CliRunner().invoke(main, ["certify", "-c", noisy_ckpt, "--method", "lyapunov"])
    assert refused.exit_code == 2 and len(refused.output.strip().splitlines()) == 1
    assert "has no Lyapunov function" in refused.output
    out = tmp_path / "results"
    args = ["certify", "-c", str(CERTIFIABLE_ZUBOV), "--method", "lyapunov", "--n-samples", "10", "--flow-samples", "2",
            "--flow-steps", "1", "--radii", "0,0.005,0.5", "--out", str(out), "--no-progress"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "median certified radius" in result.output
    records = sorted((r for r in ResultsStore(out).records() if r.threat == CERTIFIED_THREAT), key=lambda r: r.severity)
    assert [r.severity for r in records] == [0.0, 0.005, 0.5]
    assert {r.perturbation for r in records} == {LYAPUNOV_LABEL}
    assert records[0].params["method"] == "lyapunov" and records[0].params["flow_invariance"] == FLOW_NUMERIC
    assert records[0].robust_acc >= records[1].robust_acc >= records[2].robust_acc
    outcome = ResultsStore(out).outcomes(records[0].id)
    assert {"radius", "feature_radius", "feature_radius_sound", "flow_ok", "disjoint"} <= set(outcome)


def test_a_deterministic_certificate_above_the_empirical_worst_case_is_flagged():
    from zubov_bench.records import Record
    from zubov_bench.reports.tables import build_tables

    def record(perturbation, threat, acc, method_param):
        return Record(model="stable", method="stable", dataset="digits", checkpoint="c.pt", checkpoint_sha256="s",
                      train_seed=0, perturbation=perturbation, threat=threat, severity=0.5, seed=0,
                      grad_solver="all", n=100, clean_acc=0.9, robust_acc=acc,
                      params={"n_samples": 100, **({"method": method_param} if method_param else {})})

    worst = record("worst-case", "l2", 0.40, None)
    for method, certified_acc, flagged in (("lyapunov", 0.55, True), ("lyapunov", 0.35, False),
                                           ("smoothing", 0.55, False)):  # smoothing certifies g, not f
        cert = record(f"{method} certificate", CERTIFIED_THREAT, certified_acc, method)
        table = build_tables([worst, cert], worst_case=True)[0]
        assert ("certified_le_empirical" in table.failed_checks()) == flagged, (method, certified_acc)


def test_sanity_checks_treat_the_two_certificates_apart():
    """robust_le_clean skips smoothing (the smoothed classifier may beat the model's clean accuracy);
    certified_le_empirical fails a Lyapunov certificate above the empirical worst case."""
    from zubov_bench.evaluation.sanity import run_checks
    from zubov_bench.records import Record

    def record(perturbation, threat, acc, method_param, severity=0.5):
        return Record(model="zubov", method="zubov", dataset="digits", checkpoint="c.pt", checkpoint_sha256="s",
                      train_seed=0, perturbation=perturbation, threat=threat, severity=severity, seed=0,
                      grad_solver="all" if threat == "l2" else "none", n=100, clean_acc=0.8, robust_acc=acc,
                      params={"n_samples": 100, **({"method": method_param} if method_param else {})})

    worst = record("worst-case", "l2", 0.40, None)
    smoothed = record("smoothing σ=0.25", CERTIFIED_THREAT, 0.85, "smoothing", severity=0.0)
    sound = record("lyapunov certificate", CERTIFIED_THREAT, 0.30, "lyapunov")
    unsound = record("lyapunov certificate", CERTIFIED_THREAT, 0.55, "lyapunov")
    result = run_checks([worst, smoothed, sound])
    assert "robust_le_clean" not in result[smoothed.id]
    assert result[sound.id]["certified_le_empirical"]["ok"]
    assert not run_checks([worst, unsound])[unsound.id]["certified_le_empirical"]["ok"]


@pytest.mark.parametrize("name", sorted(name for name, _ in list_models()))
def test_every_registered_model_can_be_smoothed(name, digits):
    torch.manual_seed(0)
    model = create_model(name, digits.spec).eval()
    index = eval_subset(len(digits.x_test), 3)
    out = certify(model, digits.x_test[index], digits.y_test[index], index, SmoothingSettings(SIGMA, 5, 20, 0.1),
                  batch_size=25)
    assert out["radius"].shape == (3,) and np.all(out["radius"] >= 0)
    assert np.all((out["prediction"] >= ABSTAIN) & (out["prediction"] < digits.spec.num_classes))


def test_a_killed_certify_resumes_to_the_same_records(noisy_ckpt, tmp_path, monkeypatch):
    from zubov_bench.evaluation import certify as module

    kwargs = dict(sigma=SIGMA, n0=10, n=50, n_samples=60, batch_size=200, progress=False, log=lambda m: None)
    calls, real = [], module.certify

    def dies_after_two_parts(*args, **kw):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(1)
        return real(*args, **kw)

    monkeypatch.setattr(module, "certify", dies_after_two_parts)
    with pytest.raises(KeyboardInterrupt):
        module.certify_checkpoints(noisy_ckpt, out=tmp_path / "a", **kwargs)
    assert len(list((tmp_path / "a" / "partial").glob("*/batch-*.npz"))) == 2
    monkeypatch.setattr(module, "certify", real)
    resumed = module.certify_checkpoints(noisy_ckpt, out=tmp_path / "a", **kwargs)
    fresh = module.certify_checkpoints(noisy_ckpt, out=tmp_path / "b", **kwargs)
    assert [r.id for r in resumed] == [r.id for r in fresh]
    for r in fresh:
        a, b = ResultsStore(tmp_path / "a").outcomes(r.id), ResultsStore(tmp_path / "b").outcomes(r.id)
        assert all(np.array_equal(a[k], b[k]) for k in b)
    assert not (tmp_path / "a" / "partial").exists()
