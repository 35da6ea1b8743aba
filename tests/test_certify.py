"""Randomized smoothing: the certificate's arithmetic, seeding, the store and CLI, and its soundness
against a strong L2 attack on the smoothed classifier (which catches a certificate 2x too large)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from scipy.stats import binom, norm

from conftest import quick_train
from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.cli import main
from zubov_bench.evaluation import ResultsStore
from zubov_bench.evaluation.certify import (ABSTAIN, CERTIFIED_THREAT, SmoothingSettings, allowed_failures,
                                            certify, example_noise, fooled_certificates, lower_confidence_bound)
from zubov_bench.evaluation.plan import eval_subset
from zubov_bench.models import create_model, list_models

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


@pytest.mark.parametrize("extra,message", [
    (["--sigma", "-1"], "--sigma must be a positive number"),
    (["--n", "0"], "--n must be an integer >= 1"),
    (["--alpha", "1.5"], "--alpha must be in (0, 1)"),
    (["--radii", "a,b"], "--radii must be comma-separated numbers"),
    (["--method", "lyapunov"], "needs a model with a Lyapunov function"),
    (["--method", "ibp"], "unknown --method"),
])
def test_certify_bad_input_is_one_line(noisy_ckpt, tmp_path, extra, message):
    result = CliRunner().invoke(main, ["certify", "-c", noisy_ckpt, "--out", str(tmp_path / "o"), *extra])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {result.output.strip()[7:]}"]
    assert message in result.output
    assert not (tmp_path / "o").exists()


def test_lyapunov_method_says_it_is_not_implemented(digits, tmp_path):
    path = tmp_path / "zubov.pt"
    save_checkpoint(path, create_model("zubov", digits.spec).eval(), extra={})
    result = CliRunner().invoke(main, ["certify", "-c", str(path), "--method", "lyapunov"])
    assert result.exit_code == 2 and "not implemented yet" in result.output


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
