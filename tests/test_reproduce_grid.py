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


# --- an attack on some training seeds only: {attack: SPEC, seeds: [0]} ------------------------------
SEEDS_GRID = {
    "description": "node with two training seeds; FGSM on both, PGD on seed 0 only",
    "datasets": ["digits"],
    "models": ["node"],
    "seeds": [0, 1],
    "train": {"default": {"epochs": 1}},
    "eval": {"n_samples": 20, "batch_size": 20, "transfer_source": None,
             "attacks": [{"attack": "fgsm", "eps": [0.1]},
                         {"attack": "pgd:steps=3", "eps": [0.1], "seeds": [0]}]},
}


@pytest.fixture(scope="module")
def seeds_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro-seeds") / "seeds-grid"
    return out, reproduce(parse_preset("test-seeds-grid", SEEDS_GRID), out, **QUIET)


def test_an_attack_narrowed_to_seeds_runs_only_on_their_checkpoints(seeds_run):
    out, result = seeds_run
    records = ResultsStore(out).records()
    # (every checkpoint also has the large-eps sanity PGD, which is no member of the grid)
    assert {r.train_seed for r in records if r.perturbation == "pgd" and not r.params.get("sanity")} == {0}
    assert {r.train_seed for r in records if r.perturbation == "fgsm"} == {0, 1}
    readme = result.readme.read_text()
    assert "`pgd:steps=3` only on the checkpoints of training seed(s) 0 (of 0, 1)" in readme
    assert "pgd" in readme.lower() and "training seed(s) 0 only" in readme


def test_the_worst_case_is_strict_for_seed_0_and_every_seed_over_the_common_attacks(seeds_run):
    import numpy as np

    from zubov_bench.reports import build_tables, load_records
    from zubov_bench.reports.seed_coverage import EVERY_SEED

    out, _ = seeds_run
    store = ResultsStore(out)
    records = load_records(out)
    table, = build_tables(records, worst_case=True, outcomes=store.outcomes)
    key = ("worst-case", "linf", 0.1)
    strict, every = table.cells[("node", key)], table.cells[("node", (EVERY_SEED, "linf", 0.1))]
    sha_of = {r.train_seed: r.checkpoint_sha256 for r in records}
    stored = {r.train_seed: r.robust_acc for r in records if r.perturbation == "worst-case" and r.threat == "linf"}
    assert strict.values == {sha_of[0]: stored[0]}  # seed 0 alone: the one that ran every attack
    fgsm0 = [r for r in records if r.perturbation == "fgsm" and r.train_seed == 0]
    common0 = np.logical_and.reduce([store.outcomes(r.id)["robust"] for r in fgsm0]).mean()
    assert every.values == {sha_of[0]: pytest.approx(common0), sha_of[1]: stored[1]}
    assert stored[0] <= common0  # leaving PGD out can only weaken seed 0's bound
    notes = " ".join(table.notes)
    assert "PGD on training seed(s) 0 only (of seeds 0, 1)" in notes and "Worst case, every seed" in notes
    assert "PGD: training seed(s) 0 only" in notes
    # without the per-example outcomes there is no every-seed column, and the note says so
    bare, = build_tables(records, worst_case=True)
    assert not any(c.key[0] == EVERY_SEED for c in bare.columns)
    assert "not shown here" in " ".join(bare.notes)
    md = (out / "tables" / "results.md").read_text()
    assert "Worst case, every seed" in md


def test_attack_seeds_must_be_trained_seeds():
    from zubov_bench.errors import UserError

    bad = {**SEEDS_GRID, "eval": {"attacks": [{"attack": "fgsm", "seeds": [3]}]}}
    with pytest.raises(UserError, match=r"seeds \[3\] are not trained by this preset"):
        parse_preset("bad-seeds", bad)
    with pytest.raises(UserError, match="seeds of fgsm must be a non-empty list"):
        parse_preset("bad-seeds", {**SEEDS_GRID, "eval": {"attacks": [{"attack": "fgsm", "seeds": ["a"]}]}})
