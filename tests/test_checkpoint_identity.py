"""A checkpoint's sha256 names the model, not the list of settings its code had.

Stores find a run's records by its checkpoint's sha256, and a clone retrains the runs whose weights
are not committed and compares. A setting added to a model's config would change that hash for
every retrained run although the weights are bit for bit the same, unless the config declares it
hash-neutral (ODEConfig.hash_neutral, checkpoint.identity_settings).
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from zubov_bench.checkpoint import hash_neutral_settings, load_checkpoint, save_checkpoint, state_hash
from zubov_bench.models import MODELS, create_model
from zubov_bench.models.base import ODEConfig

SNAPSHOT = Path(__file__).parent / "data" / "hashed_settings.json"


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def test_every_setting_of_a_built_in_model_is_pinned_as_hashed_or_declared_hash_neutral():
    snapshot = json.loads(SNAPSHOT.read_text())
    built_in = [n for n in MODELS.names() if MODELS.get(n).__module__.startswith(("zubov_bench.", "baselines."))]
    assert sorted(snapshot) == built_in, "a built-in model was added or removed: pin its settings in " + str(SNAPSHOT)
    for name in built_in:
        config_cls = MODELS.get(name).Config
        neutral = hash_neutral_settings(config_cls)
        settings = {f.name for f in dataclasses.fields(config_cls)}
        assert set(neutral) <= settings, f"{name}: hash_neutral names settings its config lacks"
        hashed = sorted(settings - set(neutral))
        new = sorted(set(hashed) - set(snapshot[name]["hashed"]))
        assert not new, (f"{name}: {', '.join(new)} would change the sha256 of every retrained {name} checkpoint. "
                         "Declare each in its config's hash_neutral with the value that keeps a model as it was, "
                         f"or, to give every {name} model a new identity on purpose, add it to {SNAPSHOT.name}")
        assert hashed == snapshot[name]["hashed"], f"{name}: hashed settings removed; stored hashes would not match"
        kept = {k: _canonical(v) for k, v in neutral.items()}
        assert all(kept.get(k) == _canonical(v) for k, v in snapshot[name]["neutral"].items()), \
            f"{name}: a hash-neutral setting was removed or its neutral value changed; stored hashes would not match"


def test_a_setting_added_later_keeps_the_sha256_of_a_model_it_does_not_change(tmp_path, monkeypatch, digits):
    torch.manual_seed(0)
    model = create_model("node", digits.spec, d=8, stem_width=16, field_hidden=16)
    config, state = model.config_dict(), model.state_dict()
    # what the code had before `noise_aug` existed: neither the setting nor its hash-neutral entry
    before = state_hash("node", {k: v for k, v in config.items() if k != "noise_aug"}, state)
    assert save_checkpoint(tmp_path / "hashed.pt", model) != before  # an undeclared new setting changes it
    monkeypatch.setattr(ODEConfig, "hash_neutral", {"noise_aug": 0})  # declared when it is added (0 as 0.0)
    assert save_checkpoint(tmp_path / "same.pt", model) == before
    meta = load_checkpoint(tmp_path / "same.pt")[1]
    assert meta["sha256"] == before and meta["config"]["noise_aug"] == 0.0  # it verifies; still stored in full
    other = create_model("node", digits.spec, d=8, stem_width=16, field_hidden=16, noise_aug=0.5)
    other.load_state_dict(state)
    assert save_checkpoint(tmp_path / "other.pt", other) != before  # another value is another model
