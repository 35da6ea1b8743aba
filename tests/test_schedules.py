"""Schedules that cannot silently vanish (issue 18).

Every registered model declares the loss terms that define it (`loss_terms`). Each one, trained
with the shortest schedule any reproduce preset gives it (its epochs and model overrides), must
log every declared term non-zero in some epoch of metrics.csv; a schedule that would never switch a
term on in the configured epochs is refused when the trainer is built.
"""
from __future__ import annotations

import csv
from dataclasses import replace

import pytest
import torch

from zubov_bench.errors import UserError
from zubov_bench.models import MODELS, create_model
from zubov_bench.presets import resolve_preset
from zubov_bench.reproduce import PRESETS
from zubov_bench.training.trainer import Trainer, TrainConfig

SUBSET = 64  # training and test examples: one optimiser step per epoch keeps every run cheap


def shortest_schedule(model: str) -> tuple[str, int, dict]:
    """(where, epochs, model overrides) of the fewest-epoch run any reproduce preset plans for `model`,
    resolved as `reproduce` resolves it; `train`'s digits defaults for a model no preset runs."""
    runs = [("train --dataset digits", resolve_preset(model, "digits")["train"]["epochs"], {})]
    for name in PRESETS.names():
        preset = PRESETS.get(name)
        for label in preset.default_models():
            variant = preset.variant(label)
            if variant.model != model:
                continue
            for dataset in preset.datasets:
                train = {**resolve_preset(model, dataset)["train"], **preset.train_overrides(model, dataset),
                         **variant.train}
                overrides = {**preset.model_overrides(model, dataset), **variant.model_config}
                runs.append((f"{name}/{dataset}/{label}", int(train["epochs"]), overrides))
    return min(runs, key=lambda run: run[1])


def _small(digits):
    return replace(digits, x_train=digits.x_train[:SUBSET], y_train=digits.y_train[:SUBSET],
                   x_test=digits.x_test[:SUBSET], y_test=digits.y_test[:SUBSET])


@pytest.mark.parametrize("name", MODELS.names())
def test_every_declared_loss_term_is_non_zero_in_the_shortest_preset_run(name, digits, tmp_path):
    where, epochs, overrides = shortest_schedule(name)
    model_config = {**resolve_preset(name, "digits")["model"], **overrides}
    train = {**resolve_preset(name, "digits")["train"], "epochs": epochs}
    cfg = TrainConfig(**{**train, "batch_size": SUBSET, "device": "cpu", "progress": False, "seed": 0})
    torch.manual_seed(0)
    model = create_model(name, digits.spec, **model_config)
    declared = type(model).loss_terms
    assert declared, f"{name} declares no loss terms"
    Trainer(model, _small(digits), cfg, tmp_path, {"model": name}).fit()
    with open(tmp_path / "metrics.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == epochs
    for term in declared:
        column = f"train_{term}"
        values = [float(row[column]) for row in rows if row.get(column) not in (None, "")]
        assert any(v != 0 for v in values), (
            f"{name}: declared loss term {term!r} is zero or absent in every epoch of its shortest "
            f"preset run ({where}, {epochs} epochs): {values}")


def test_tisode_refuses_a_penalty_that_would_start_after_the_run(digits, tmp_path):
    model = create_model("tisode", digits.spec)  # ss_start_epoch = 5, the released setting
    cfg = TrainConfig(epochs=4, device="cpu", progress=False)
    with pytest.raises(UserError, match="ss_start_epoch=5.*trains 4 epochs"):
        Trainer(model, _small(digits), cfg, tmp_path, {})
    Trainer(model, _small(digits), replace(cfg, epochs=6), tmp_path, {})  # epoch 5 exists: accepted
    off = create_model("tisode", digits.spec, ss_weight=0.0)  # no penalty asked for: nothing to refuse
    Trainer(off, _small(digits), cfg, tmp_path, {})


def test_a_staged_recipe_with_fewer_epochs_than_stages_is_refused(digits, tmp_path):
    model = create_model("sodef", digits.spec)
    with pytest.raises(UserError, match="3 training stages .*need at least 3 epochs, got 2"):
        Trainer(model, _small(digits), TrainConfig(epochs=2, device="cpu", progress=False), tmp_path, {})
