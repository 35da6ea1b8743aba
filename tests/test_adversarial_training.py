"""PGD adversarial training (train setting adv_eps): the examples, and a run that uses them."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from zubov_bench.training import resolve_run_config, train_run
from zubov_bench.training.adversarial import adversarial_batch


def test_adversarial_batch_stays_in_the_ball_raises_the_loss_and_restores_the_mode(trained_node, digits):
    model = trained_node.train()
    x, y = digits.x_test[:64], digits.y_test[:64]
    x_adv = adversarial_batch(model, x, y, eps=0.1, steps=5, seed=3)
    assert model.training
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    model.eval()  # also hands the session fixture back as it came
    with torch.no_grad():
        assert F.cross_entropy(model(x_adv), y) > F.cross_entropy(model(x), y) + 0.1
    again = adversarial_batch(model, x, y, eps=0.1, steps=5, seed=3)
    assert torch.equal(x_adv, again)  # seeded: a resumed run draws the same examples


def test_adversarial_training_runs_with_zubov_losses_and_is_recorded(tmp_path):
    resolved = resolve_run_config("zubov", "digits", None, {"epochs": 1, "adv_eps": 0.1, "adv_steps": 2}, {})
    summary = train_run(resolved, tmp_path / "run", progress=False, device="cpu")
    config = (tmp_path / "run" / "config.yaml").read_text()
    assert "adv_eps: 0.1" in config and "adv_steps: 2" in config
    assert 0 <= summary["test_acc"] <= 1


def test_adversarial_fraction_keeps_the_rest_of_the_batch_clean(trained_node, digits):
    model = trained_node.eval()
    x, y = digits.x_test[:10], digits.y_test[:10]
    mixed = adversarial_batch(model, x, y, eps=0.1, steps=3, seed=3, fraction=0.5)
    assert torch.equal(mixed[5:], x[5:]) and not torch.equal(mixed[:5], x[:5])
    assert (mixed - x).abs().max() <= 0.1 + 1e-6


def test_adversarial_fraction_outside_0_1_is_refused_in_one_line(tmp_path):
    import pytest

    from zubov_bench.errors import UserError

    for bad in (0.0, 1.5):
        with pytest.raises(UserError, match=r"^adv_fraction must be in \(0, 1\], got"):  # when the run is resolved
            resolve_run_config("node", "digits", None, {"epochs": 1, "adv_eps": 0.1, "adv_fraction": bad}, {})
        resolved = resolve_run_config("node", "digits", None, {"epochs": 1, "adv_eps": 0.1}, {})
        resolved["train"]["adv_fraction"] = bad  # and from a resolved config built by hand
        with pytest.raises(UserError, match=r"^adv_fraction must be in \(0, 1\], got"):
            train_run(resolved, tmp_path / "run", progress=False, device="cpu")
