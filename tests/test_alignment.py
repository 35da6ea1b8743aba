"""The Lyapunov alignment diagnostics measure what they claim (docs/evaluation.md)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.cli import main
from zubov_bench.data import load_dataset
from zubov_bench.evaluation import evaluate
from zubov_bench.evaluation.alignment import ALIGNMENT_FILE, AlignmentConfig, alignment_diagnostics
from zubov_bench.models.base import ODEConfig, ODEModel

FAST = AlignmentConfig(rays_per_class=40, horizon=10.0, steps_per_unit=10, iou_resolution=40)


class TowardNearest(nn.Module):
    """f(z) = -sign * (z - e_nearest): every e_k attracts (sign 1) or repels (sign -1)."""

    def __init__(self, owner, sign: float):
        super().__init__()
        self.sign, self._owner = sign, [owner]

    def forward(self, t, z):
        eq = self._owner[0].equilibria
        nearest = eq[torch.cdist(z, eq).argmin(1)]
        return -self.sign * (z - nearest)


class BallLyapunov(ODEModel):
    """V_k = ||z - e_k||^2 / s^2 around K well-separated points: PRoAs are disjoint balls of radius s."""

    has_lyapunov = True

    def __init__(self, spec, d: int, sign: float):
        super().__init__(spec, ODEConfig(d=d), TowardNearest(self, sign))
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(spec.input_dim, d))
        g = torch.Generator().manual_seed(0)
        self.register_buffer("equilibria", 4.0 * torch.randn(spec.num_classes, d, generator=g))
        self.radius = 0.3 * float(torch.pdist(self.equilibria).min())

    def lyapunov(self, z, cls=None):
        v = (z.unsqueeze(-2) - self.equilibria).pow(2).sum(-1) / self.radius**2
        return v if cls is None else v.gather(1, cls[:, None]).squeeze(1)

    def vector_field(self, z):
        return self.odefunc.field(None, z)

    def initial_state_logits(self, x):  # the last LyapunovModel member (the Lyapunov-aware attack's head)
        return -self.lyapunov(self.features(x))

    def forward(self, x):
        return -self.lyapunov(self.solve(self.features(x)))


@pytest.fixture(scope="module")
def toy2d():
    return load_dataset("toy2d")


@pytest.mark.parametrize("d", [2, 5])
def test_stable_flow_is_measured_stable_and_unstable_flow_unstable(toy2d, d):
    x, y = toy2d.x_test[:100], toy2d.y_test[:100]
    stable = alignment_diagnostics(BallLyapunov(toy2d.spec, d, +1.0), x, y, FAST)
    unstable = alignment_diagnostics(BallLyapunov(toy2d.spec, d, -1.0), x, y, FAST)
    k = toy2d.spec.num_classes
    assert stable["stable_equilibria"] == k and stable["max_real_eigenvalue"] == pytest.approx(-1.0, abs=1e-4)
    assert stable["proa_reach_equilibrium"] == 1.0 and stable["proa_v_dot_negative"] == 1.0
    assert stable["v_y_falls"] > 0.0 and stable["proa_rays_kept"] == 1.0
    assert stable["equilibria_in_own_proa"] == unstable["equilibria_in_own_proa"] == k
    assert unstable["stable_equilibria"] == 0 and unstable["max_real_eigenvalue"] == pytest.approx(1.0, abs=1e-4)
    assert unstable["proa_reach_equilibrium"] == 0.0 and unstable["proa_v_dot_negative"] <= 0.01  # round-off at e_k
    if d == 2:  # the true basins of the stable flow are the Voronoi cells: larger than the PRoA balls
        assert 0.0 < stable["proa_roa_iou"] < 1.0 and unstable["proa_roa_iou"] == 0.0
    else:
        assert "proa_roa_iou" not in stable


def test_eval_stores_alignment_for_lyapunov_models_only_and_table_shows_it(trained_zubov, trained_node,
                                                                           digits, tmp_path, capsys):
    paths = []
    for name, model in (("zubov", trained_zubov), ("node", trained_node)):
        paths.append(tmp_path / f"{name}.pt")
        save_checkpoint(paths[-1], model, extra={"model": name, "dataset": "digits", "seed": 0})
    out = tmp_path / "res"
    evaluate([str(p) for p in paths], attacks="gaussian", eps="0.1", n_samples=60, batch_size=60,
             out=str(out), progress=False, log=lambda m: None)
    entries = [json.loads(line) for line in (out / ALIGNMENT_FILE).read_text().splitlines()]
    assert [e["model"] for e in entries] == ["zubov"] and entries[0]["n"] == 60
    assert 0 <= entries[0]["stable_equilibria"] <= 10 and 0.0 <= entries[0]["proa_reach_equilibrium"] <= 1.0
    before = (out / ALIGNMENT_FILE).read_text()
    evaluate([str(paths[0])], attacks="gaussian", eps="0.1", n_samples=60, batch_size=60, out=str(out),
             progress=False, log=lambda m: None)
    assert (out / ALIGNMENT_FILE).read_text() == before  # stored once, not recomputed
    with pytest.raises(SystemExit) as done:
        main(["table", "--results", str(out), "--alignment"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    assert "Lyapunov alignment" in text and "| zubov | 0 |" in text and "of 10" in text


def test_table_alignment_without_diagnostics_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as done:
        main(["table", "--results", str(tmp_path), "--alignment"])
    assert done.value.code == 2
    assert capsys.readouterr().err.strip().startswith("error: no alignment diagnostics")


def test_alignment_store_round_trip_replaces_by_key_and_refuses_a_broken_line(tmp_path):
    from zubov_bench.evaluation import ResultsStore
    from zubov_bench.errors import UserError
    from zubov_bench.evaluation.alignment import read_alignment, store_alignment

    store = ResultsStore(tmp_path)
    entry = {"checkpoint_sha256": "abc", "seed": 0, "n": 60, "config": {"horizon": 10.0},
             "dataset": "digits", "method": "zubov", "train_seed": 0, "stable_equilibria": 3, "equilibria": 10}
    assert store_alignment(store, entry) and read_alignment(tmp_path) == [entry]
    newer = {**entry, "stable_equilibria": 10}
    assert not store_alignment(store, newer)  # same checkpoint, seed, n and settings: kept
    assert store_alignment(store, newer, replace=True) and read_alignment(tmp_path) == [newer]
    other = {**entry, "config": {"horizon": 20.0}}
    assert store_alignment(store, other) and len(read_alignment(tmp_path)) == 2
    with open(tmp_path / ALIGNMENT_FILE, "a") as f:
        f.write("{not json\n")
    with pytest.raises(UserError, match=r"alignment.jsonl:3: not an alignment entry"):
        read_alignment(tmp_path)  # refused, not skipped: the next write would drop the line
