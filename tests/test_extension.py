"""A new attack that needs a source model and a new model, each one file outside this repository,
go through `eval --attack all`, `table` and `reproduce` (the real CLI, in subprocesses).

The module is written to tmp_path and installed the way `pip install` would leave it (the module
plus a dist-info declaring its entry points), so no file of the repository changes.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLI = str(Path(sys.executable).parent / "zubov-bench")

PLUGIN = '''
"""A throwaway attack (replays one signed-gradient step of a source model) and a throwaway model."""
from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.errors import UserError
from zubov_bench.models import ODEConfig, ODEModel, batch_accuracy, register_model
from zubov_bench.models.layers import MLPField, make_stem
from zubov_bench.perturbations import Attack, register_perturbation


@dataclass
class ReplayParams:
    source: Optional[str] = None
    norm: str = "linf"


@register_perturbation("replay-step")
class ReplayStep(Attack):
    description = "throwaway: one signed-gradient step on a source checkpoint, replayed"
    display_name = "Replay step"
    kind = "transfer"
    gradient_based = False
    iterative = False
    needs_source = True
    Params = ReplayParams

    def __init__(self, **params):
        super().__init__(**params)
        self._source = None

    def source(self):
        if self._source is None:
            if not self.params.source:
                raise UserError("replay-step needs source=PATH")
            self._source = load_checkpoint(self.params.source)
        return self._source

    def prepare(self):
        self.source()

    def settings(self):
        return {**super().settings(), "source_sha256": self.source()[1]["sha256"]}

    def attack(self, model, x, y, eps, generator):
        source = self.source()[0]
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            grad, = torch.autograd.grad(F.cross_entropy(source(x), y), x)
        return (x + eps * grad.sign()).clamp(0, 1).detach()


@dataclass
class ThrowawayConfig(ODEConfig):
    d: int = 8
    field_hidden: int = 16


@register_model("throwaway-ode")
class ThrowawayODE(ODEModel):
    Config = ThrowawayConfig
    description = "throwaway: a tiny autonomous Neural ODE with a linear head"
    recipes = {"toy2d": {"train": {"lr": 1e-2}}}

    def __init__(self, spec, cfg):
        super().__init__(spec, cfg, MLPField(cfg.d, cfg.field_hidden, cfg.field_act))
        self.stem = make_stem(spec, cfg.d, cfg.stem, cfg.stem_width, cfg.spectral_norm)
        self.head = nn.Linear(cfg.d, spec.num_classes)

    def forward(self, x):
        return self.head(self.solve(self.features(x)))

    def training_loss(self, x, y):
        logits = self(x)
        loss = F.cross_entropy(logits, y)
        return loss, {"cls": float(loss.detach()), "acc": batch_accuracy(logits, y)}
'''

PRESET = """
throwaway:
  description: a throwaway model against every attack, a throwaway one included
  datasets: [toy2d]
  models: [throwaway-ode]
  seeds: [0]
  threads: 1
  train:
    default: {epochs: 2}
  eval:
    n_samples: 40
    batch_size: 40
    attacks: [replay-step, fgsm, "pgd:steps=5"]
    transfer_source: node
"""


def install(site: Path) -> None:
    """What `pip install` of a package holding this module would leave behind."""
    site.mkdir()
    (site / "zb_throwaway.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "zb_throwaway-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zb-throwaway\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zubov_bench.models]\nthrowaway-ode = zb_throwaway\n\n"
                                           "[zubov_bench.perturbations]\nreplay-step = zb_throwaway\n")


def run(args, env, cwd):
    out = subprocess.run([CLI, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, f"{args[:3]} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "records.jsonl").read_text().splitlines() if line]


@pytest.fixture
def env(tmp_path, cli_env):
    install(tmp_path / "site")
    path = os.pathsep.join(filter(None, [str(tmp_path / "site"), cli_env.get("PYTHONPATH")]))
    return dict(cli_env, PYTHONPATH=path, OMP_NUM_THREADS="1")


def test_a_throwaway_attack_and_model_run_through_reproduce_eval_all_and_table(env, tmp_path):
    (tmp_path / "throwaway.yaml").write_text(PRESET)
    out = tmp_path / "out"
    run(["reproduce", "--preset", str(tmp_path / "throwaway.yaml"), "--out", str(out), "--no-progress"], env, tmp_path)

    resolved = (out / "checkpoints" / "throwaway-ode-toy2d-s0" / "config.yaml").read_text()
    assert "lr: 0.01" in resolved  # the class's own recipe
    stored = records(out)
    replay = [r for r in stored if r["perturbation"] == "replay-step"]
    assert replay and all(r["model"] == "throwaway-ode" and r["params"]["source_sha256"] for r in replay)
    assert not [r for r in stored if r["model"] == "node"]  # the source is trained, never attacked
    assert "Replay step" in (out / "README.md").read_text()  # its display name in the generated tables

    # every registered perturbation, the throwaway one included, against the throwaway model
    source = out / "checkpoints" / "node-toy2d-s0" / "model.pt"
    target = out / "checkpoints" / "throwaway-ode-toy2d-s0" / "model.pt"
    evaluated = tmp_path / "eval"
    run(["eval", "-c", str(target), "--attack", "all", "--transfer-from", str(source), "--n-samples", "30",
         "--eps", "0.1", "--out", str(evaluated), "--no-progress"], env, tmp_path)
    names = {r["perturbation"] for r in records(evaluated)}
    assert {"replay-step", "transfer", "pgd", "fgsm", "gaussian", "worst-case"} <= names
    worst = [r for r in records(evaluated) if r["perturbation"] == "worst-case" and r["threat"] == "linf"]
    replayed = [r for r in records(evaluated) if r["perturbation"] == "replay-step"]
    assert worst and set(worst[0]["members"]) >= {r["id"] for r in replayed}  # it counts toward the worst case

    table = run(["table", "--results", str(evaluated)], env, tmp_path)
    assert "Replay step" in table and "throwaway-ode" in table
