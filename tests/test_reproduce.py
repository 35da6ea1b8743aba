"""`zubov-bench reproduce`: a tiny registered preset end to end, resume after a finished run,
resume after interruptions in training and in evaluation, preset validation and the CLI."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.errors import UserError
from zubov_bench.evaluation import ResultsStore
from zubov_bench.reproduce import PRESETS, load_preset, parse_preset, register_reproduce_preset, reproduce
from zubov_bench.reproduce import evaluation as repro_eval
from zubov_bench.reproduce import training as repro_train
from zubov_bench.reproduce.evaluation import validate_groups
from zubov_bench.reproduce.readme import reductions
from zubov_bench.reproduce.training import plan_run, run_state

TINY = {
    "description": "two models, two cheap perturbations (+ transfer), 50 samples",
    "datasets": ["digits"],
    "models": ["node", "zubov"],
    "seeds": [0],
    "train": {"default": {"epochs": 1}, "zubov": {"epochs": 2}},
    "eval": {"n_samples": 50, "batch_size": 25, "seed": 0, "transfer_source": "node",
             "attacks": [{"attack": "gaussian", "eps": [0.1, 0.3]}, {"attack": "fgsm", "eps": [0.1]},
                         {"attack": "transfer:steps=3", "eps": [0.1]}]},
    "tradeoff": {"threat": "linf", "eps": 0.1},
    "roa": {"dataset": "toy2d", "models": ["zubov"], "train": {"epochs": 1}, "resolution": 16,
            "horizon": 2.0, "steps": 8},
    "notes": ["a test preset"],
}
register_reproduce_preset("test-tiny", TINY, replace=True)
QUIET = dict(progress=False, log=lambda message: None)


def records_by_cell(out) -> dict[tuple, tuple]:
    return {(r.model, r.perturbation, r.threat, r.severity, r.grad_solver, r.params.get("sanity")):
            (r.checkpoint_sha256, r.n, r.clean_acc, r.robust_acc) for r in ResultsStore(out).records()}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("repro") / "tiny"
    return out, reproduce("test-tiny", out, **QUIET)


def test_end_to_end_writes_records_tables_figures_and_readme(tiny_run):
    out, result = tiny_run
    assert result.training == {"node-digits-s0": "trained", "zubov-digits-s0": "trained",
                               "zubov-toy2d-s0": "trained"}
    for name in ("results", "worst-case"):
        for ext in ("md", "tex", "csv"):
            assert (out / "tables" / f"{name}.{ext}").stat().st_size > 100
    latex = (out / "tables" / "results.tex").read_text()
    assert "\\toprule" in latex and "\\bottomrule" in latex and "node" in latex and "zubov" in latex
    for stem in ("severity-digits", "tradeoff-digits", "roa-zubov-toy2d-s0"):
        for ext in ("png", "pdf"):
            assert (out / "figures" / f"{stem}.{ext}").stat().st_size > 1000
    records = ResultsStore(out).records()
    assert {r.model for r in records} == {"node", "zubov"}
    transfer = [r for r in records if r.perturbation == "transfer"]
    assert [r.model for r in transfer] == ["zubov"]  # nothing transfers onto its own source
    assert {r.severity for r in records if r.perturbation == "gaussian"} == {0.1, 0.3}
    assert all(r.n == 50 for r in records if not r.params.get("sanity"))
    assert any(r.perturbation == "worst-case" for r in records)


def test_manifest_and_readme_describe_the_run(tiny_run):
    out, result = tiny_run
    manifest = json.loads((out / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    assert [e["name"] for e in manifest] == ["node-digits-s0", "zubov-digits-s0", "zubov-toy2d-s0"]
    shas = {r.checkpoint_sha256 for r in ResultsStore(out).records()}
    assert {e["sha256"] for e in manifest if e["dataset"] == "digits"} == shas
    assert all(0 <= e["test_acc"] <= 1 and e["config"]["train"]["epochs"] == e["epochs"] for e in manifest)
    readme = result.readme.read_text()
    assert f"zubov-bench reproduce --preset test-tiny --out {out}" in readme
    for needle in ("**Commit:**", "CPU cores", "torch ", "device: cpu", "**Wall time:**", "Load average",
                   "50 test samples per record", "a test preset", "## Results", "roa-zubov-toy2d-s0.png"):
        assert needle in readme, needle


def test_second_invocation_retrains_and_reevaluates_nothing(tiny_run, monkeypatch):
    out, _ = tiny_run
    before = records_by_cell(out)

    def forbidden(*args, **kwargs):
        raise AssertionError("a finished preset must not train or evaluate again")

    for module, name in ((repro_train, "train_run"), (repro_train, "resume_run"), (repro_eval, "evaluate")):
        monkeypatch.setattr(module, name, forbidden)
    again = reproduce("test-tiny", out, **QUIET)
    assert set(again.training.values()) == {"skipped"} and again.groups_evaluated == 0
    assert records_by_cell(out) == before
    state = json.loads((out / "reproduce.json").read_text())
    assert len(state["invocations"]) >= 2 and state["invocations"][-1]["finished"]


def test_records_lost_from_the_store_are_evaluated_again(tiny_run, tmp_path):
    """The state file only short-cuts evaluation while the store still holds the records."""
    import shutil

    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    store = ResultsStore(copy)
    fgsm = [r.id for r in store.records() if r.perturbation == "fgsm" and r.model == "node"]
    store.remove(fgsm)
    result = reproduce("test-tiny", copy, **QUIET)
    assert result.groups_evaluated == 1
    assert {r.id for r in store.records()} >= set(fgsm)


def test_recheck_recomputes_the_sanity_checks_of_finished_runs_and_says_so(tiny_run, tmp_path, monkeypatch):
    """After the checks changed: every finished run's sanity is recomputed from its records,
    nothing is attacked, and the README names the commit that rechecked."""
    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    store = ResultsStore(copy)
    computed = {r.id: r.sanity for r in store.records()}
    store.update_sanity({i: {"robust_le_clean": {"ok": False, "detail": "older checks"}} for i in computed})
    monkeypatch.setattr(repro_eval, "evaluate", lambda *a, **k: pytest.fail("a recheck attacks nothing"))
    lines = []
    result = reproduce("test-tiny", copy, progress=False, log=lines.append, recheck=True)
    assert {r.id: r.sanity for r in store.records()} == computed and result.groups_evaluated == 0
    assert sorted(line for line in lines if line.startswith("[recheck]")) == [
        "[recheck] node-digits-s0: worst cases and sanity checks recomputed",
        "[recheck] zubov-digits-s0: worst cases and sanity checks recomputed"]
    readme = result.readme.read_text()
    assert f"--out {copy} --recheck`" in readme and "**Sanity checks recomputed** (`--recheck`" in readme
    assert set(json.loads((copy / "reproduce.json").read_text())["rechecked"]) == {"node-digits-s0",
                                                                                 "zubov-digits-s0"}


def test_a_run_recorded_without_its_weights_is_announced_and_retrained_to_them(tiny_run, tmp_path):
    """A store committed without some weights: the plan says which runs train again before any
    does, and each says whether it came back to the recorded sha256 (training is deterministic)."""
    out, _ = tiny_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    run_dir = copy / "checkpoints" / "zubov-digits-s0"
    (run_dir / "model.pt").unlink()  # what a clone of a repository that ignores weights finds
    (run_dir / repro_train.STATE_FILE).unlink(missing_ok=True)
    before = records_by_cell(copy)
    lines = []
    result = reproduce("test-tiny", copy, progress=False, log=lines.append)
    plan = [line for line in lines if line.startswith("[plan]")]
    assert plan == ["[plan] 3 run(s): 2 trained earlier, 0 to resume, 1 to train; 1 of these recorded as "
                    "finished but without their weights, trained again: zubov-digits-s0"]
    assert lines.index(plan[0]) < min(i for i, line in enumerate(lines) if line.startswith("[train"))
    assert "  zubov-digits-s0: trained again to the recorded weights" in lines
    assert result.training["zubov-digits-s0"] == "trained" and records_by_cell(copy) == before


def test_force_retrains_the_named_model_and_replaces_its_records_only(tiny_run, tmp_path):
    """The preset's budget for the transfer source changed: --force retrains it, its records and
    the transfer records replaying it are recomputed, nothing of the old checkpoint stays, and the
    other model keeps its checkpoint and its own records."""
    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    store = ResultsStore(out)
    before = store.records()
    longer = parse_preset("test-tiny", {**TINY, "train": {**TINY["train"], "node": {"epochs": 2}}})
    with pytest.raises(UserError, match="different config"):
        reproduce(longer, out, **QUIET)
    result = reproduce(longer, out, models="node", force=True, **QUIET)
    assert result.training == {"node-digits-s0": "trained"}
    after = store.records()
    manifest = json.loads((out / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    # the manifest and the README still describe the runs of the model --models left alone
    assert [(e["name"], e["role"]) for e in manifest] == [
        ("node-digits-s0", "evaluated; transfer source"), ("zubov-digits-s0", "evaluated"),
        ("zubov-toy2d-s0", "RoA figure")]
    readme = result.readme.read_text()
    assert "zubov-digits-s0/model.pt" in readme and "roa-zubov-toy2d-s0.png" in readme
    assert "left out by --models" not in readme
    node_sha = next(e["sha256"] for e in manifest if e["name"] == "node-digits-s0")
    old_node = {r.checkpoint_sha256 for r in before if r.model == "node"}
    assert node_sha not in old_node
    assert {r.checkpoint_sha256 for r in after if r.model == "node"} == {node_sha}
    # zubov was not selected: its transfer records replaying the old node go, and come back from a
    # run that selects it, which retrains nothing
    assert not [r for r in after if r.perturbation == "transfer" or (r.model == "zubov" and r.members)]
    untouched = {r.id for r in before if r.model == "zubov" and r.perturbation not in ("transfer", "worst-case")}
    assert untouched <= {r.id for r in after}
    again = reproduce(longer, out, **QUIET)
    assert set(again.training.values()) == {"skipped"}
    after = store.records()
    assert {r.params["source_sha256"] for r in after if r.perturbation == "transfer"} == {node_sha}
    assert len(after) == len(before)  # replaced, not added beside
    kept = {p.stem for p in (out / "outcomes").glob("*.npz")}
    assert {r.id for r in after} <= kept and not kept & ({r.id for r in before} - {r.id for r in after})


def test_force_replaces_the_alignment_diagnostics_of_a_retrained_checkpoint(tiny_run, tmp_path):
    """A retrained Lyapunov model's diagnostics describe the new checkpoint only: the entries of
    its earlier training go, as its records do, instead of sitting beside the new ones."""
    from zubov_bench.evaluation.alignment import read_alignment

    out = tmp_path / "copy"
    shutil.copytree(tiny_run[0], out)
    before = [e for e in read_alignment(out) if e["method"] == "zubov"]
    assert before
    longer = parse_preset("test-tiny", {**TINY, "train": {**TINY["train"], "zubov": {"epochs": 3}}})
    reproduce(longer, out, models="zubov", force=True, **QUIET)
    manifest = json.loads((out / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    zubov_sha = next(e["sha256"] for e in manifest if e["name"] == "zubov-digits-s0")
    after = [e for e in read_alignment(out) if e["method"] == "zubov"]
    assert zubov_sha not in {e["checkpoint_sha256"] for e in before}
    assert len(after) == len(before) and {e["checkpoint_sha256"] for e in after} == {zubov_sha}


def test_records_of_a_retrained_checkpoint_or_source_are_stale(tiny_run):
    from zubov_bench.reproduce.evaluation import stale_records

    records = ResultsStore(tiny_run[0]).records()
    replay = next(r for r in records if r.perturbation == "transfer")
    zubov, node = (replay.checkpoint, replay.checkpoint_sha256), (replay.params["source"], replay.params["source_sha256"])
    assert stale_records(records, *zubov) == [] and stale_records(records, *node) == []
    assert set(stale_records(records, zubov[0], "0" * 64)) == {r.id for r in records if r.checkpoint == zubov[0]}
    worst = {r.id for r in records if replay.id in r.members}
    assert worst and set(stale_records(records, node[0], "0" * 64)) == \
        {r.id for r in records if r.checkpoint == node[0]} | {replay.id} | worst


class SimulatedKill(Exception):
    pass


def test_interrupted_training_and_evaluation_resume_to_the_same_records(tiny_run, tmp_path, monkeypatch):
    from zubov_bench.evaluation import runner
    from zubov_bench.training.trainer import Trainer

    reference = records_by_cell(tiny_run[0])
    out = tmp_path / "killed"
    real_finish = Trainer._finish_epoch

    def die_in_zubov_epoch_2(self):
        if self.run_info["model"] == "zubov" and self.run_info["dataset"] == "digits" and self.progress.epoch == 1:
            raise SimulatedKill("killed during training")
        real_finish(self)

    monkeypatch.setattr(Trainer, "_finish_epoch", die_in_zubov_epoch_2)
    with pytest.raises(SimulatedKill):
        reproduce("test-tiny", out, **QUIET)
    assert (out / "checkpoints" / "zubov-digits-s0" / "last.pt").is_file()
    assert not (out / "checkpoints" / "zubov-digits-s0" / "model.pt").exists()
    monkeypatch.setattr(Trainer, "_finish_epoch", real_finish)

    calls = []
    real_batch = runner.run_batch

    def die_after_three_batches(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise SimulatedKill("killed during evaluation")
        return real_batch(*args, **kwargs)

    monkeypatch.setattr(runner, "run_batch", die_after_three_batches)
    with pytest.raises(SimulatedKill):
        reproduce("test-tiny", out, **QUIET)
    monkeypatch.setattr(runner, "run_batch", real_batch)

    final = reproduce("test-tiny", out, **QUIET)
    assert final.training["node-digits-s0"] == "skipped"
    assert records_by_cell(out) == reference
    state = json.loads((out / "reproduce.json").read_text())
    assert [i["finished"] for i in state["invocations"]] == [False, False, True]


def test_two_worker_processes_give_the_same_records(tiny_run, tmp_path):
    """--jobs 2: training runs and checkpoint evaluations in spawned workers, bookkeeping here."""
    out = tmp_path / "parallel"
    result = reproduce("test-tiny", out, jobs=2, **QUIET)
    assert set(result.training.values()) == {"trained"} and result.groups_evaluated == 4  # 2 eps groups x 2 checkpoints
    assert records_by_cell(out) == records_by_cell(tiny_run[0])
    assert "2 worker process(es)" in result.readme.read_text()


def test_a_run_folder_with_another_config_is_never_reused(tmp_path):
    first = plan_run("node", "digits", 0, {"epochs": 1}, {}, tmp_path)
    repro_train.write_json(first.run_dir / repro_train.PLAN_FILE, repro_train._plain(first.resolved))
    (first.run_dir / "config.yaml").write_text(yaml.safe_dump({"model": "node"}))
    assert run_state(first) == "fresh"  # planned, nothing trained yet
    changed = plan_run("node", "digits", 0, {"epochs": 2}, {}, tmp_path)
    with pytest.raises(UserError, match="different config.*train.epochs"):
        run_state(changed)


def test_a_model_setting_spelled_out_at_its_default_is_the_same_run(tmp_path):
    """A study pins a default explicitly (lambda_sep: 1.0): the folder trained without it is reused,
    but any other value is a different run."""
    first = plan_run("zubov", "digits", 0, {"epochs": 1}, {}, tmp_path)
    repro_train.write_json(first.run_dir / repro_train.PLAN_FILE, repro_train._plain(first.resolved))
    (first.run_dir / "config.yaml").write_text(yaml.safe_dump({"model": "zubov"}))
    assert run_state(plan_run("zubov", "digits", 0, {"epochs": 1}, {"lambda_sep": 1.0}, tmp_path)) == "fresh"
    with pytest.raises(UserError, match="different config.*model_config.lambda_sep"):
        run_state(plan_run("zubov", "digits", 0, {"epochs": 1}, {"lambda_sep": 0.0}, tmp_path))


def test_budgets_layer_default_dataset_model_and_model_at_dataset():
    preset = parse_preset("layers", {"train": {"default": {"epochs": 1, "lr": 0.1}, "@digits": {"epochs": 2},
                                               "zubov": {"epochs": 3}, "zubov@mnist": {"epochs": 4}}})
    assert preset.train_overrides("node", "digits") == {"epochs": 2, "lr": 0.1}
    assert preset.train_overrides("zubov", "digits") == {"epochs": 3, "lr": 0.1}
    assert preset.train_overrides("zubov", "mnist") == {"epochs": 4, "lr": 0.1}


@pytest.mark.parametrize("data, message", [
    ({"bogus": 1}, "unknown key"),
    ({"eval": {"n_samples": 0}}, "n_samples"),
    ({"eval": {"attacks": []}}, "non-empty"),
    ({"eval": {"attacks": [{"attack": "fgsm", "eps": [-0.1]}]}}, "> 0"),
    ({"seeds": ["a"]}, "seeds"),
    ({"tradeoff": {"threat": "noise"}}, "tradeoff"),
    ({"train": {"default": 3}}, "train must map"),
])
def test_bad_presets_are_one_clear_error(data, message):
    with pytest.raises(UserError, match=message):
        parse_preset("bad", data)


def test_bad_attack_fails_before_anything_is_written(tmp_path):
    register_reproduce_preset("test-bad-attack", {**TINY, "eval": {"attacks": ["pgd:stepz=3"]}}, replace=True)
    with pytest.raises(UserError, match="stepz"):
        reproduce("test-bad-attack", tmp_path / "out", **QUIET)
    assert not (tmp_path / "out").exists()


def test_builtin_presets_are_valid_and_quick_says_what_it_reduced():
    assert {"quick", "fashion-mnist", "paper"} <= set(PRESETS.names())
    for name in ("quick", "fashion-mnist", "paper"):
        validate_groups(PRESETS.get(name).eval)
    quick = PRESETS.get("quick")
    assert "node" in quick.models and "zubov" in quick.models and quick.datasets == ["digits"] and quick.roa.dataset == "toy2d"
    grids = {"digits": {"linf": (0.05, 0.1, 0.2, 0.3), "l2": (1.0, 2.0)}}
    runs = [plan_run("node", "digits", 0, quick.train_overrides("node", "digits"), {}, Path("x"))]
    text = "\n".join(reductions(quick, runs, grids))
    assert "version = custom (full protocol: standard)" in text and "full protocol: >= 1000" in text
    assert "training epochs below" not in text  # quick trains every model's own recipe
    shortened = [plan_run("node", "digits", 0, {"epochs": 8}, {}, Path("x"))]
    assert "node 8 (preset 20)" in "\n".join(reductions(quick, shortened, grids))
    full = PRESETS.get("fashion-mnist")
    assert full.eval.n_samples >= 1000 and "all" in full.eval.groups[0].attacks


def test_preset_from_a_yaml_file(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text(yaml.safe_dump({"mine": {"datasets": ["digits"], "models": ["node"],
                                             "eval": {"attacks": ["fgsm"]}}}))
    preset = load_preset(str(path))
    assert preset.name == "mine" and preset.models == ["node"]
    with pytest.raises(UserError, match="not found"):
        load_preset(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("args, message", [
    ([], "no preset given"),
    (["--preset", "quik"], "did you mean 'quick'"),
    (["--preset", "quick", "--models", "nod"], "did you mean 'node'"),
    (["--preset", "test-tiny", "--jobs", "0"], "--jobs must be >= 1"),
    (["--preset", "test-tiny", "--threads", "0"], "--threads must be >= 1"),
])
def test_cli_bad_input_is_one_line(args, message, tmp_path):
    result = CliRunner().invoke(main, ["reproduce", "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "o").exists()


def test_cli_lists_presets():
    result = CliRunner().invoke(main, ["reproduce", "--list"])
    assert result.exit_code == 0 and "quick" in result.output and "fashion-mnist" in result.output


def test_excluded_models_are_left_out_and_named_in_the_readme():
    from zubov_bench.models import MODELS
    from zubov_bench.reproduce.pipeline import resolve_models

    preset = parse_preset("excl", {"exclude": {"sodef": "too slow for this test"}})
    names = resolve_models(preset, None)
    assert "sodef" not in names and set(names) == set(MODELS.names()) - {"sodef"}
    assert resolve_models(preset, "sodef,node") == ["sodef", "node"]  # --models wins
    runs = [plan_run(m, "digits", 0, {}, {}, __import__("pathlib").Path("x")) for m in names]
    assert any("`sodef` left out: too slow for this test" in line for line in reductions(preset, runs, {}))
    fewer = [r for r in runs if r.model != "stable"]  # --models without stable
    assert "not run (left out by --models): `stable`" in reductions(preset, fewer, {})


def _record(arg, log=None):
    return arg


def test_scheduler_runs_ready_tasks_by_priority_and_adds_new_ones():
    from zubov_bench.reproduce.parallel import Scheduler, Task

    order = []

    def done(task, result):
        order.append(result)
        if result == "train-b":  # a finished task may add work that waits on another task
            return [Task("eval-b", _record, "eval-b", priority=10, after=("train-a",))]
        return []

    tasks = [Task("train-a", _record, "train-a", priority=1), Task("train-b", _record, "train-b", priority=5),
             Task("late", _record, "late", priority=0)]
    Scheduler(1, 1, print).run(tasks, done)
    assert order == ["train-b", "train-a", "eval-b", "late"]
    with pytest.raises(RuntimeError, match="never ran"):
        Scheduler(1, 1, print).run([Task("x", _record, "x", after=("missing",))], done)


def test_the_transfer_source_is_trained_only_when_an_attack_needs_it():
    from pathlib import Path

    from zubov_bench.reproduce.pipeline import plan_runs

    with_transfer = parse_preset("t1", {"eval": {"attacks": ["fgsm", "transfer"]}})
    without = parse_preset("t2", {"eval": {"attacks": ["fgsm"]}})
    runs = plan_runs(with_transfer, ["zubov"], Path("x"))
    assert [(r.model, r.evaluate, r.role) for r in runs] == [("node", False, "transfer source only"),
                                                            ("zubov", True, "evaluated")]
    assert [r.model for r in plan_runs(without, ["zubov"], Path("x"))] == ["zubov"]


def _spawned_children(pid: int) -> list[int]:
    """Worker processes (multiprocessing spawn) whose parent is `pid`, from /proc."""
    from pathlib import Path

    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            ppid = next(int(line.split()[1]) for line in status.read_text().splitlines() if line.startswith("PPid:"))
            cmdline = (status.parent / "cmdline").read_bytes()
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == pid and b"spawn_main" in cmdline:
            found.append(int(status.parent.name))
    return found


def _is_worker(pid: int) -> bool:
    try:  # a zombie has an empty cmdline
        return b"spawn_main" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc")
def test_a_killed_reproduce_stops_its_worker_processes(tmp_path):
    """SIGTERM to the command (not its process group) must not leave workers training on."""
    import os
    import signal
    import subprocess
    import sys
    import time

    preset = tmp_path / "slow.yaml"
    preset.write_text(yaml.safe_dump({"slow": {"datasets": ["digits"], "models": ["node", "zubov"],
                                               "train": {"default": {"epochs": 200}},
                                               "eval": {"attacks": ["fgsm"]}}}))
    proc = subprocess.Popen([sys.executable, "-m", "zubov_bench", "reproduce", "--preset", str(preset), "--out",
                             str(tmp_path / "out"), "--jobs", "2", "--threads", "1", "--no-progress"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while len(_spawned_children(proc.pid)) < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        workers = _spawned_children(proc.pid)
        assert len(workers) == 2, proc.stderr.read().decode() if proc.poll() is not None else "no workers"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 130
        deadline = time.monotonic() + 30
        while any(map(_is_worker, workers)) and time.monotonic() < deadline:
            time.sleep(0.2)
        alive = [w for w in workers if _is_worker(w)]
        assert not alive, f"worker processes {alive} outlived the killed command"
        assert b"interrupted" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_a_readme_names_its_commit_dirty_only_for_code_changes(tmp_path):
    """Regenerating committed results changes files under results/: that is not a dirty commit."""
    from zubov_bench.provenance import git_state

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    (tmp_path / "pkg").mkdir()
    (tmp_path / "results" / "quick").mkdir(parents=True)
    (tmp_path / "pkg" / "code.py").write_text("x = 1\n")
    (tmp_path / "results" / "quick" / "README.md").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("commit", "-q", "-m", "init")
    (tmp_path / "results" / "quick" / "README.md").write_text("regenerated\n")
    commit, dirty = git_state(tmp_path / "pkg")
    assert len(commit) == 40 and not dirty
    (tmp_path / "pkg" / "code.py").write_text("x = 2\n")
    assert git_state(tmp_path / "pkg")[1]
