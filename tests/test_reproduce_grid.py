"""Reproduce presets beyond plain attack lists: each model's `paper` protocol in a preset."""
from __future__ import annotations

import pytest

from zubov_bench.evaluation import ResultsStore
from zubov_bench.reproduce import parse_preset, reproduce
from zubov_bench.reproduce.evaluation import validate_groups

QUIET = dict(progress=False, log=lambda message: None)

PAPER_GRID = {
    "description": "node (no paper protocol) and tisode (its paper's FGSM), the paper protocol beside FGSM",
    "datasets": ["digits"],
    "models": ["node", "tisode"],
    "seeds": [0],
    "train": {"default": {"epochs": 1}},
    "model_config": {"tisode": {"ss_start_epoch": 0}},
    "eval": {"n_samples": 20, "batch_size": 20, "transfer_source": None,
             "attacks": [{"attack": "fgsm", "eps": [0.1]}, {"attack": "paper", "eps": [0.1]}]},
}


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro-paper") / "paper-grid"
    return out, reproduce(parse_preset("test-paper-grid", PAPER_GRID), out, **QUIET)


def test_paper_in_a_preset_runs_each_models_own_protocol_beside_the_worst_case(paper_run):
    out, result = paper_run
    records = ResultsStore(out).records()
    paper = [r for r in records if r.params.get("protocol") == "paper"]
    assert {r.model for r in paper} == {"tisode"} and {r.severity for r in paper} == {0.1}
    worst = [r for r in records if r.perturbation == "worst-case" and r.model == "tisode"]
    assert worst and all(not set(w.members) & {r.id for r in paper} for w in worst)
    table = (out / "tables" / "worst-case.md").read_text()
    assert "Paper protocol" in table and "gap" in table
    readme = result.readme.read_text()
    assert "each model's own paper attack (tisode)" in readme and "no paper protocol: node" in readme
    assert "Paper protocol" in readme  # the results table the README embeds


def test_a_paper_protocol_that_cannot_be_built_fails_before_training(monkeypatch):
    from zubov_bench.errors import UserError
    from zubov_bench.models import MODELS
    from zubov_bench.models.paper_protocol import PaperProtocol

    preset = parse_preset("test-paper-bad", PAPER_GRID)
    validate_groups(preset.eval, ["node", "tisode"])
    broken = PaperProtocol("fgsm", {"stepz": 3}, "pixel", MODELS.get("tisode").paper_attack.citation)
    monkeypatch.setattr(MODELS.get("tisode"), "paper_attack", broken)
    with pytest.raises(UserError, match="paper protocol 'fgsm'"):
        validate_groups(preset.eval, ["node", "tisode"])
