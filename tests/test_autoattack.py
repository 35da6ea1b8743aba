"""The AutoAttack adapter: pyautoattack's original algorithm behind `create_perturbation("autoattack")`.

AutoAttack standard is expensive (100-iteration APGD, 9 targets for APGD-T and FAB-T, 5,000
Square queries), so the agreement test uses a small MLP trained here on digits; the undefended
Neural ODE fixture is used where APGD-CE alone fools every sample.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pyautoattack import AutoAttack as LibraryAutoAttack
from torch import nn

from zubov_bench.errors import UserError
from zubov_bench.perturbations import create_perturbation
from zubov_bench.perturbations.base import lp_distance


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def correct(model, x, y) -> torch.Tensor:
    return model(x).argmax(1) == y


class SmallMLP(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, num_classes))

    def forward(self, x):
        return self.net(x)


@pytest.fixture(scope="module")
def small_mlp(digits):
    torch.manual_seed(0)
    model = SmallMLP()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(150):
        loss = nn.functional.cross_entropy(model(digits.x_train), digits.y_train)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    assert correct(model, digits.x_test, digits.y_test).float().mean() > 0.9
    return model


def test_standard_matches_pyautoattack_own_evaluation(digits, small_mlp):
    x, y = digits.x_test[:48], digits.y_test[:48]
    eps, seed = 0.1, 7
    ours = create_perturbation("autoattack")(small_mlp, x, y, eps, gen(seed))
    theirs, _ = LibraryAutoAttack(small_mlp, norm="Linf", eps=eps, version="standard",
                                  seed=seed).run_standard_evaluation(x, y, batch_size=len(x))
    ours_ok, theirs_ok = correct(small_mlp, ours, y), correct(small_mlp, theirs, y)
    # every member attack ran on survivors, and robust accuracy is identical, sample by sample
    assert 0 < int(ours_ok.sum()) < int(correct(small_mlp, x, y).sum())
    assert torch.equal(ours_ok, theirs_ok)
    assert float(lp_distance(ours, x, "linf").max()) <= eps + 1e-5


def test_adapter_finds_adversarial_examples_on_an_undefended_node(digits, trained_node):
    x, y = digits.x_test[:32], digits.y_test[:32]
    state = torch.get_rng_state()
    x_adv = create_perturbation("autoattack")(trained_node, x, y, 0.3, gen())
    assert torch.equal(state, torch.get_rng_state())  # the library's reseeding does not leak
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert float(lp_distance(x_adv, x, "linf").max()) <= 0.3 + 1e-5
    assert correct(trained_node, x_adv, y).float().mean() <= 0.1 < correct(trained_node, x, y).float().mean()


def test_custom_l2_respects_eps(digits, small_mlp):
    x, y = digits.x_test[:32], digits.y_test[:32]
    atk = create_perturbation("autoattack", version="custom", attacks="apgd-ce,apgd-dlr", norm="l2")
    assert atk.threat == "l2" and atk.attacks_to_run() == ("apgd-ce", "apgd-dlr")
    x_adv = atk(small_mlp, x, y, 1.0, gen())
    assert float(lp_distance(x_adv, x, "l2").max()) <= 1.0 + 1e-5
    assert correct(small_mlp, x_adv, y).sum() < correct(small_mlp, x, y).sum()


def test_versions_map_to_the_library_attack_lists():
    assert create_perturbation("autoattack").attacks_to_run() == ("apgd-ce", "apgd-t", "fab-t", "square")
    assert create_perturbation("autoattack", version="rand").attacks_to_run() == ("apgd-ce", "apgd-dlr")
    assert len(create_perturbation("autoattack", version="plus").attacks_to_run()) == 6


def test_fewer_classes_use_fewer_targets(digits):
    torch.manual_seed(0)
    model = SmallMLP(num_classes=5).eval()
    x = digits.x_test[:8]
    y = model(x).argmax(1).detach()
    atk = create_perturbation("autoattack", version="custom", attacks="apgd-t,fab-t")
    x_adv = atk(model, x, y, 0.05, gen())
    assert float(lp_distance(x_adv, x, "linf").max()) <= 0.05 + 1e-5


def test_vector_inputs_and_too_few_classes_are_user_errors():
    model = nn.Sequential(nn.Linear(2, 3)).eval()
    x = torch.rand(8, 2)
    y = model(x).argmax(1).detach()
    with pytest.raises(UserError, match="image"):
        create_perturbation("autoattack")(model, x, y, 0.05, gen())
    with pytest.raises(UserError, match="4 classes"):
        create_perturbation("autoattack", version="custom", attacks="apgd-t")(model, x, y, 0.05, gen())
    x_adv = create_perturbation("autoattack", version="custom", attacks="apgd-ce")(model, x, y, 0.05, gen())
    assert float(lp_distance(x_adv, x, "linf").max()) <= 0.05 + 1e-5


def test_only_runs_a_subset_with_the_version_settings(digits, small_mlp, monkeypatch):
    from zubov_bench.perturbations.autoattack import run_autoattack
    seen = {}

    def capture(self, x, y, batch_size=250, **kw):
        seen.update(attacks=list(self.attacks_to_run), restarts=self.apgd.n_restarts)
        return x, None
    monkeypatch.setattr(LibraryAutoAttack, "run_standard_evaluation", capture)
    x, y = digits.x_test[:8], digits.y_test[:8]
    run_autoattack(small_mlp, x, y, eps=0.1, norm="linf", version="standard", seed=0, only=["apgd-ce"])
    assert seen == {"attacks": ["apgd-ce"], "restarts": 1}  # the standard's single restart
    run_autoattack(small_mlp, x, y, eps=0.1, norm="linf", version="custom", seed=0, attacks=["apgd-ce"])
    assert seen == {"attacks": ["apgd-ce"], "restarts": 5}  # custom: the library's default


# --- AutoAttack's own flags (issue 21) ---------------------------------------------------------
class NoisyLogits(nn.Module):
    """A randomized defense: noise on the logits of every call."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(x) + 0.5 * torch.randn(len(x), 10)


class QuantizedInput(nn.Module):
    """Zero input gradient everywhere: the input is rounded before the linear layer."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))

    def forward(self, x):
        return self.net(torch.round(x * 4) / 4)


def flags_of(model, x, y, attacks):
    atk = create_perturbation("autoattack", version="custom", attacks=attacks)
    atk(model, x, y, 0.1, gen())
    return atk.take_flags()


def test_library_flags_are_captured(digits, small_mlp):
    torch.manual_seed(0)
    x = digits.x_test[:16]
    assert set(flags_of(NoisyLogits().eval(), x, digits.y_test[:16], "apgd-ce")) == {"randomized"}
    quantized = QuantizedInput().eval()
    zero = flags_of(quantized, x, quantized(x).argmax(1).detach(), "apgd-dlr")
    assert set(zero) == {"zero_gradients"} and "zero gradient" in zero["zero_gradients"]
    assert flags_of(small_mlp, x, digits.y_test[:16], "apgd-ce") == {}  # a plain model: none


def test_flags_show_in_tables_apart_from_sanity_checks():
    import dataclasses
    from pathlib import Path

    from zubov_bench.reports import build_tables, load_records, render

    committed = load_records(Path(__file__).resolve().parents[1] / "results/quick")
    assert "‡" in render(build_tables(committed), "md")  # the committed AutoAttack runs raised flags
    # without the library's flags: no ‡; with one added by hand to every AutoAttack record: ‡
    records = [dataclasses.replace(r, sanity={k: v for k, v in r.sanity.items() if not k.startswith("autoattack:")})
               for r in committed]
    assert "‡" not in render(build_tables(records), "md")
    flagged = [dataclasses.replace(r, sanity={**r.sanity, "autoattack:dynamic": {
        "ok": False, "detail": "it seems to be a dynamic defense!"}}) if r.perturbation == "autoattack" else r
        for r in records]
    text = render(build_tables(flagged), "md")
    assert "‡" in text and "flagged this cell (autoattack:dynamic)" in text
    assert "autoattack:dynamic" not in text.split("† a sanity check failed")[-1].split("\n")[0]


def test_a_run_interrupted_after_an_attack_resumes_there(digits, small_mlp, tmp_path, caplog):
    """SIGKILLed inside FAB-T (after APGD-CE and APGD-T finished), the run resumes at FAB-T and
    returns the same examples as an uninterrupted run."""
    import logging

    from zubov_bench.perturbations.autoattack import run_autoattack

    x, y = digits.x_test[:32], digits.y_test[:32]
    keep = correct(small_mlp, x, y)
    x, y = x[keep], y[keep]
    settings = dict(eps=0.1, norm="linf", version="standard", seed=3)
    reference = run_autoattack(small_mlp, x, y, **settings)

    # A separate process runs the same attack and is SIGKILLed (no handler, no cleanup) the moment
    # FAB-T starts: what survives is only what the state file had on disk by then.
    torch.save({"weights": small_mlp.state_dict(), "x": x, "y": y}, tmp_path / "inputs.pt")
    script = f"""
import os, signal, sys
import torch
sys.path.insert(0, {str(Path(__file__).parent)!r})
from pyautoattack.fab_pt import FABAttack_PT
from test_autoattack import SmallMLP
from zubov_bench.perturbations.autoattack import run_autoattack
data = torch.load({str(tmp_path / "inputs.pt")!r}, weights_only=True)
model = SmallMLP()
model.load_state_dict(data["weights"])
model.eval()
FABAttack_PT.perturb = lambda self, *a, **k: os.kill(os.getpid(), signal.SIGKILL)
run_autoattack(model, data["x"], data["y"], **{settings!r}, state_dir={str(tmp_path)!r})
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    state = json.loads(next(tmp_path.glob("autoattack-*.json")).read_text())
    assert state["_run_attacks"] == ["apgd-ce", "apgd-t"]
    with caplog.at_level(logging.DEBUG, logger="auto-attack"):
        resumed = run_autoattack(small_mlp, x, y, **settings, state_dir=tmp_path)
    ran = [r.getMessage() for r in caplog.records if r.getMessage().startswith("running ")]
    assert ran == ["running fab-t", "running square"]  # the finished attacks were not re-run
    assert torch.equal(correct(small_mlp, resumed, y), correct(small_mlp, reference, y))
    assert torch.equal(resumed, reference)
