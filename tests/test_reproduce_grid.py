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


def run_grid(tmp_path_factory, name: str, grid: dict):
    """(out folder, reproduce result) of the test preset `grid`, run once into a fresh folder."""
    out = tmp_path_factory.mktemp(f"repro-{name}") / f"{name}-grid"
    return out, reproduce(parse_preset(f"test-{name}-grid", grid), out, **QUIET)


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    return run_grid(tmp_path_factory, "paper", PAPER_GRID)


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
    return run_grid(tmp_path_factory, "seeds", SEEDS_GRID)


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
    # how much weaker the every-seed bound is, measured where both exist (seed 0)
    assert f"leaving PGD out raises the worst case by up to {100 * (common0 - stored[0]):.1f} points (node)" in notes
    # without the per-example outcomes there is no every-seed column, and the note says so
    bare, = build_tables(records, worst_case=True)
    assert not any(c.key[0] == EVERY_SEED for c in bare.columns)
    assert "not shown here" in " ".join(bare.notes)
    md = (out / "tables" / "results.md").read_text()
    assert "Worst case, every seed" in md


def test_figures_count_the_worst_case_as_the_tables_do(seeds_run):
    """The severity figure's worst case is strict (seed 0, which ran every attack) and the every-seed
    worst case is a series of its own; the trade-off point's clean accuracy is of the same seeds."""
    from zubov_bench.reports import load_records
    from zubov_bench.reports.plots import figure_cells, tradeoff_figure
    from zubov_bench.reports.seed_coverage import EVERY_SEED

    out, _ = seeds_run
    store = ResultsStore(out)
    records = load_records(out)
    _, cells, keys = figure_cells(records, store.outcomes)
    sha_of = {r.train_seed: r.checkpoint_sha256 for r in records}
    assert set(cells[("node", ("worst-case", "linf", 0.1))].values) == {sha_of[0]}
    assert (EVERY_SEED, "linf", 0.1) in keys and len(cells[("node", (EVERY_SEED, "linf", 0.1))].values) == 2
    figure = tradeoff_figure(records, "digits", 0.1, outcomes=store.outcomes)
    (x,), _ = figure.axes[0].lines[0].get_data()
    clean0 = next(r.clean_acc for r in records if r.train_seed == 0 and r.perturbation == "worst-case")
    assert x == pytest.approx(100 * clean0)  # seed 0's clean accuracy, not the mean over both seeds
    assert (out / "figures" / "severity-digits.png").exists()


def test_attack_seeds_must_be_trained_seeds():
    from zubov_bench.errors import UserError

    bad = {**SEEDS_GRID, "eval": {"attacks": [{"attack": "fgsm", "seeds": [3]}]}}
    with pytest.raises(UserError, match=r"seeds \[3\] are not trained by this preset"):
        parse_preset("bad-seeds", bad)
    with pytest.raises(UserError, match="seeds of fgsm must be a non-empty list"):
        parse_preset("bad-seeds", {**SEEDS_GRID, "eval": {"attacks": [{"attack": "fgsm", "seeds": ["a"]}]}})


# --- certification in a preset: certify: [{method: smoothing, ...}, {method: lyapunov}] ----------------
CERTIFY_GRID = {
    "description": "node and zubov (one seed: zubov is slow to train); FGSM, then smoothing and the Lyapunov "
                   "certificate",
    "datasets": ["digits"],
    "models": ["node", "zubov"],
    "seeds": [0],
    "train": {"default": {"epochs": 1}},
    "eval": {"n_samples": 12, "batch_size": 12, "transfer_source": None,
             "attacks": [{"attack": "fgsm", "eps": [0.1]}]},
    "certify": [{"method": "smoothing", "sigma": 0.25, "n0": 8, "n": 32, "alpha": 0.01, "radii": [0.25, 0.5],
                 "n_samples": 8, "batch_size": 64, "seeds": [0]},
                {"method": "lyapunov", "flow_samples": 1, "flow_steps": 1, "radii": [0.1]}],
}


@pytest.fixture(scope="module")
def certify_run(tmp_path_factory):
    return run_grid(tmp_path_factory, "certify", CERTIFY_GRID)


def test_certificates_run_after_the_attacks_on_the_same_examples_into_the_same_store(certify_run):
    from zubov_bench.data import load_dataset
    from zubov_bench.evaluation.plan import eval_subset

    out, result = certify_run
    store = ResultsStore(out)
    records = store.records()
    smoothing = [r for r in records if r.params.get("method") == "smoothing"]
    assert {(r.model, r.train_seed, r.severity) for r in smoothing} == \
        {(m, 0, radius) for m in ("node", "zubov") for radius in (0.25, 0.5)}
    assert {r.n for r in smoothing} == {8}
    lyapunov = {(r.model, r.train_seed) for r in records if r.params.get("method") == "lyapunov"}
    assert ("node", 0) not in lyapunov and ("node", 1) not in lyapunov  # node has no Lyapunov function
    assert lyapunov == {("zubov", 0)}
    fgsm = next(r for r in records if r.perturbation == "fgsm" and r.model == "node" and r.train_seed == 0)
    certified = next(r for r in smoothing if r.model == "node")
    # the first 8 of the fixed permutation whose first 12 the attacks ran on (outcomes are stored sorted)
    subset = sorted(eval_subset(len(load_dataset("digits").x_test), 12)[:8].tolist())
    assert store.outcomes(certified.id)["index"].tolist() == subset
    assert set(subset) <= set(store.outcomes(fgsm.id)["index"].tolist())
    table = (out / "tables" / "results.md").read_text()
    assert "Certified L₂, smoothing σ=0.25 (radius)" in table and "Certified L₂" in table
    readme = result.readme.read_text()
    assert "| `smoothing` | alpha 0.01, n 32, n0 8, sigma 0.25 | 0.25, 0.5 | first 8 of the evaluated examples | " \
           "every checkpoint |" in readme
    assert "Certified L₂, smoothing σ=0.25" in readme


def test_a_finished_certification_is_not_run_again(certify_run, monkeypatch):
    from zubov_bench.evaluation import certify as certify_module

    out, _ = certify_run
    before = {r.id for r in ResultsStore(out).records()}

    def forbidden(*args, **kwargs):
        raise AssertionError("finished certificates must not run again")

    monkeypatch.setattr(certify_module, "certify_checkpoints", forbidden)
    again = reproduce(parse_preset("test-certify-grid", CERTIFY_GRID), out, **QUIET)
    assert again.groups_evaluated == 0 and {r.id for r in ResultsStore(out).records()} == before


def test_a_certificate_narrowed_to_seeds_is_planned_only_for_their_checkpoints(tmp_path):
    from types import SimpleNamespace

    from zubov_bench.reproduce.evaluation import pending_calls
    from zubov_bench.reproduce.state import RunState

    preset = parse_preset("certify-seeds", {**CERTIFY_GRID, "seeds": [0, 1]})
    state = RunState(tmp_path, "certify-seeds", "test")
    planned = {}
    for seed in (0, 1):
        run = SimpleNamespace(seed=seed, name=f"node-digits-s{seed}", dataset="digits", checkpoint=tmp_path / "m.pt")
        calls = pending_calls(run, f"sha{seed}", preset.eval, None, tmp_path, state, set(), preset.certify)
        planned[seed] = [(c.kind, c.kwargs.get("method"), c.kwargs.get("n_samples")) for c in calls]
    assert planned[0] == [("eval", None, 12), ("certify", "smoothing", 8), ("certify", "lyapunov", 12)]
    assert planned[1] == [("eval", None, 12), ("certify", "lyapunov", 12)]


@pytest.mark.parametrize("item, message", [
    ({"method": "interval"}, "certify method must be one of smoothing, lyapunov"),
    ({"method": "lyapunov", "sigma": 0.5}, "sigma belong"),
    ({"method": "smoothing", "sigma": -1}, "sigma must be a positive number"),
    ({"method": "smoothing", "n_samples": 13}, "exceeds eval.n_samples 12"),
    ({"method": "smoothing", "seeds": [5]}, r"seeds \[5\] are not trained"),
    ({"method": "smoothing", "radii": ["x"]}, "radii must be a list of numbers"),
])
def test_bad_certify_items_are_one_clear_error(item, message):
    from zubov_bench.errors import UserError

    with pytest.raises(UserError, match=message):
        parse_preset("bad-certify", {**CERTIFY_GRID, "certify": [item]})


def test_all_leaves_out_an_attack_narrowed_to_other_seeds():
    from zubov_bench.reproduce.evaluation import group_attacks, narrowed_out

    preset = parse_preset("all-but", {"seeds": [0, 1, 2], "eval": {
        "attacks": ["all", {"attack": "autoattack", "seeds": [0]}, {"attack": "pgd:steps=5", "seeds": [0]}]}})
    everything, narrowed = preset.eval.groups
    assert narrowed.seeds == (0,) and narrowed_out(preset.eval, 0) == set()
    assert narrowed_out(preset.eval, 1) == {"autoattack"}  # a spec with settings is no member of `all`
    seed1 = group_attacks(everything, False, narrowed_out(preset.eval, 1))
    assert "autoattack" not in seed1 and {"pgd", "fgsm", "square", "transfer"} <= set(seed1)
    assert group_attacks(everything, False, narrowed_out(preset.eval, 0)) == ["all"]
    assert "transfer" not in group_attacks(everything, True, {"autoattack"})  # nothing onto its own source


def test_per_checkpoint_unrolls_and_transfer_sources_are_not_a_narrowed_attack_set():
    """Each checkpoint picks its own RK4 unroll and replays its own seed's source: the same attacks."""
    from zubov_bench.records import Record
    from zubov_bench.reports import build_tables
    from zubov_bench.reports.seed_coverage import EVERY_SEED

    records = []
    for seed, steps in ((0, 10), (1, 20)):
        base = dict(model="tisode", method="tisode", dataset="digits", checkpoint=f"s{seed}.pt",
                    checkpoint_sha256=f"sha{seed}", train_seed=seed, threat="linf", severity=0.1, seed=0, n=20,
                    clean_acc=0.9, robust_acc=0.5)
        pgd = Record(perturbation="pgd", grad_solver=f"rk4:{steps}", params={"steps": 3, "n_samples": 20}, **base)
        transfer = Record(perturbation="transfer", grad_solver="none", params={
            "source": f"node-s{seed}.pt", "source_sha256": f"node{seed}", "n_samples": 20}, **base)
        worst = Record(perturbation="worst-case", grad_solver="all", params={"n_samples": 20},
                       members=[pgd.id, transfer.id], **{**base, "robust_acc": 0.4 + seed / 10})
        records += [pgd, transfer, worst]
    table, = build_tables(records, worst_case=True)
    assert len(table.cells[("tisode", ("worst-case", "linf", 0.1))].values) == 2
    assert not any(c.key[0] == EVERY_SEED for c in table.columns)
    assert not any("training seed(s)" in note for note in table.notes)


# --- reports on unusual stores --------------------------------------------------------------------
def _record(method: str, perturbation: str, threat: str, severity: float, robust: float, **params):
    from zubov_bench.records import Record

    return Record(model=method, method=method, dataset="digits", checkpoint=f"{method}.pt",
                  checkpoint_sha256=f"sha-{method}", train_seed=0, perturbation=perturbation, threat=threat,
                  severity=severity, seed=0, grad_solver="none" if threat == "noise" else "deployed", n=20,
                  clean_acc=0.9, robust_acc=robust, params={"n_samples": 20, **params})


def test_tables_and_figures_of_a_store_with_only_noise_records(tmp_path):
    from zubov_bench.reproduce.outputs import write_figures, write_tables

    store = ResultsStore(tmp_path)
    for method, robust in (("node", 0.7), ("zubov", 0.8)):
        for sigma in (0.1, 0.3):
            store.put(_record(method, "gaussian", "noise", sigma, robust - sigma / 10), None)
    written = {p.name for p in write_tables(tmp_path)}
    assert {"results.md", "results.tex", "results.csv"} <= written and "worst-case.md" not in written
    assert "Gaussian" in (tmp_path / "tables" / "results.md").read_text()
    figures = {p.name for p in write_figures(tmp_path, "linf", 0.1)}
    assert figures == {"severity-digits.png", "severity-digits.pdf"}


def test_table_only_shows_the_paper_columns_only_when_asked(tmp_path):
    from click.testing import CliRunner

    from zubov_bench.cli import main

    store = ResultsStore(tmp_path)
    for method in ("sodef", "node"):
        fgsm = _record(method, "fgsm", "linf", 0.1, 0.4)
        store.put(fgsm, None)
        store.put(_record(method, "worst-case", "linf", 0.1, 0.3), None)
    store.put(_record("sodef", "pgd", "linf", 0.1, 0.6, protocol="paper", steps=20), None)

    def table(*only):
        result = CliRunner().invoke(main, ["table", "--results", str(tmp_path), *[f"--only={o}" for o in only]])
        assert result.exit_code == 0, result.output
        return result.output

    assert "Paper protocol" in table()
    assert "Paper protocol" not in table("fgsm") and "gap" not in table("fgsm")
    assert "Paper protocol" in table("fgsm,paper")


def test_the_readme_names_the_commits_and_processors_that_trained_and_evaluated(tmp_path):
    import json

    from zubov_bench.reproduce.readme import provenance
    from zubov_bench.reproduce.state import RunState

    for name, commit, dirty, cpu in (("node-digits-s0", "a" * 40, False, "X (AVX512)"),
                                     ("node-digits-s1", "a" * 40, False, "X (AVX512)"),
                                     ("zubov-digits-s0", "b" * 40, False, "Y (AVX2)"),
                                     ("zubov-digits-s1", "b" * 40, True, None)):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
        (tmp_path / "checkpoints" / name / "env.json").write_text(
            json.dumps({"git_commit": commit, "git_dirty": dirty, **({"cpu": cpu} if cpu else {})}))
    state = RunState(tmp_path, "p", "cmd")
    state.data["evaluated"]["old"] = {"run": "node-digits-s0", "records": []}  # from before commits were recorded
    state.set_provenance("c" * 40, False, machine="Y (AVX2)")
    state.mark_evaluated("new", "zubov-digits-s0", [])
    lines = "\n".join(provenance(tmp_path, state))
    assert f"Training commits** (checkpoints' `env.json`, runs per commit): `{'a' * 12}` (2), `{'b' * 12}` (1), `{'b' * 12}` with uncommitted code changes (1)" in lines
    assert f"not recorded (1), `{'c' * 12}` (1)" in lines and f"that recorded one: {'c' * 12}" in lines
    assert "Training processors** (`env.json`'s `cpu`, runs per processor): `X (AVX512)` (2), `Y (AVX2)` (1), not recorded (1)" in lines
    assert "Invocation processors** (`reproduce.json`, invocations per processor): `Y (AVX2)` (1)" in lines


def test_columns_with_the_same_seed_coverage_share_one_note():
    from zubov_bench.reports.seed_coverage import WORST_CASE, Narrowed, narrowed_notes

    def entry(threat, eps, partial):
        return Narrowed((WORST_CASE, threat, eps), partial=partial, seeds={0, 1, 2})

    aa = {"AutoAttack": {0}}
    notes = narrowed_notes([entry("linf", 0.05, aa), entry("linf", 0.1, aa), entry("l2", 1.0, aa),
                            entry("linf", 0.3, {"Square": {0, 1}})])
    assert len(notes) == 2
    assert notes[0].startswith("Worst case at L∞ ε = 0.05, 0.1; L₂ ε = 1: AutoAttack on training seed(s) 0 only")
    assert notes[1].startswith("Worst case at L∞ ε = 0.3: Square on training seed(s) 0, 1 only")
