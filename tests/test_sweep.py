"""`zubov-bench sweep`: variants and grids of a study file, trained and attacked into one store."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.errors import UserError
from zubov_bench.evaluation import ResultsStore
from zubov_bench.reproduce import parse_preset
from zubov_bench.reproduce.pipeline import plan_runs, resolve_models

STUDY = {
    "description": "a two-variant ablation on digits",
    "datasets": ["digits"],
    "seeds": [0],
    "train": {"default": {"epochs": 1}},
    "variants": {
        "node": None,
        "zubov-no-consistency": {"model": "zubov", "model_config": {"lambda_con": 0.0}},
    },
    "eval": {"n_samples": 40, "batch_size": 40, "seed": 0, "transfer_source": "node",
             "attacks": [{"attack": "fgsm", "eps": [0.1]}, {"attack": "transfer:steps=2", "eps": [0.1]}]},
    "tradeoff": {"threat": "linf", "eps": 0.1},
}


def test_a_grid_expands_into_labelled_variants_over_the_preset_budgets():
    preset = parse_preset("s", {"train": {"default": {"epochs": 3}}, "seeds": [0], "variants": {
        "zubov-c": {"model": "zubov", "model_config": {"margin": 0.2}, "grid": {"level": [0.5, 1.0], "train.lr": [0.01]},
                    "seeds": [1, 2]},
        "node": {}}})
    assert list(preset.variants) == ["zubov-c-level=0.5-lr=0.01", "zubov-c-level=1.0-lr=0.01", "node"]
    assert preset.models == list(preset.variants)
    runs = plan_runs(preset, resolve_models(preset, None), Path("x"))
    first = runs[0]
    assert (first.model, first.method, first.seed, first.name) == ("zubov", "zubov-c-level=0.5-lr=0.01", 1,
                                                                  "zubov-c-level=0.5-lr=0.01-digits-s1")
    assert first.resolved["model_config"]["level"] == 0.5 and first.resolved["model_config"]["margin"] == 0.2
    assert first.resolved["train"]["lr"] == 0.01 and first.resolved["train"]["epochs"] == 3
    assert first.resolved["method"] == "zubov-c-level=0.5-lr=0.01"
    assert [(r.method, r.seed) for r in runs][1:] == [("zubov-c-level=0.5-lr=0.01", 2), ("zubov-c-level=1.0-lr=0.01", 1),
                                                       ("zubov-c-level=1.0-lr=0.01", 2), ("node", 0)]
    assert "method" not in runs[-1].resolved  # a variant named after its model keeps the plain name


@pytest.mark.parametrize("data, message", [
    ({"models": ["node"], "variants": {"node": {}}}, "either models or variants"),
    ({"variants": {"a": {"model": "zubov", "bogus": 1}}}, "unknown key"),
    ({"variants": {"a": {"model": "zubov", "grid": {"c": []}}}}, "non-empty lists"),
    ({"variants": {"a": {"model": "zubov", "seeds": [-1]}}}, "seeds"),
    ({"variants": {"a": {"model": "zubov", "model_config": 3}}}, "model_config must be a mapping"),
])
def test_bad_variants_are_one_clear_error(data, message):
    with pytest.raises(UserError, match=message):
        parse_preset("bad", data)


def test_unknown_variant_or_model_is_named():
    preset = parse_preset("s", {"variants": {"a": {"model": "zubof"}, "node": {}}})
    with pytest.raises(UserError, match="did you mean 'zubov'"):
        resolve_models(preset, None)
    with pytest.raises(UserError, match="unknown variant 'b'"):
        resolve_models(preset, "b")


def test_sweep_trains_and_attacks_every_variant_into_one_store_and_resumes(tmp_path):
    study = tmp_path / "ablation.yaml"
    study.write_text(yaml.safe_dump(STUDY))
    out = tmp_path / "study"
    args = ["sweep", str(study), "--out", str(out), "--no-progress", "--jobs", "1", "--threads", "1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = ResultsStore(out).records()
    cells = {(r.method, r.model, r.perturbation) for r in records if not r.params.get("sanity")}
    assert cells == {("node", "node", "fgsm"), ("node", "node", "worst-case"),  # node is the transfer source
                     ("zubov-no-consistency", "zubov", "fgsm"), ("zubov-no-consistency", "zubov", "transfer"),
                     ("zubov-no-consistency", "zubov", "worst-case")}
    config = yaml.safe_load((out / "checkpoints" / "zubov-no-consistency-digits-s0" / "config.yaml").read_text())
    assert config["model_config"]["lambda_con"] == 0.0
    manifest = json.loads((out / "checkpoints" / "manifest.json").read_text())["checkpoints"]
    assert {(e["method"], e["model"]) for e in manifest} == {("node", "node"), ("zubov-no-consistency", "zubov")}
    assert "zubov-no-consistency" in (out / "tables" / "results.md").read_text()
    readme = (out / "README.md").read_text()
    assert readme.startswith("# Study `ablation`") and f"`zubov-bench sweep {study} --out {out}" in readme
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "trained (" not in again.output and len(ResultsStore(out).records()) == len(records)


@pytest.mark.parametrize("content, args, message", [
    (None, [], "needs a study file"),
    ({"datasets": ["digits"], "models": ["node"]}, [], "has no variants"),
    (STUDY, ["--only", "zubov"], "unknown variant 'zubov'"),
    # a typo in a grid's model setting stops the study before its first variant trains
    ({"datasets": ["toy2d"], "variants": {"node": {}, "zubov-c": {"model": "zubov", "grid": {"c": [0.5, 1.0]}}}},
     [], "zubov-c-c=0.5 on toy2d: unknown config key(s) c for ZubovConfig"),
    # and so does a training budget no run can take
    ({"datasets": ["toy2d"], "variants": {"node": {}, "node-lr": {"model": "node", "grid": {"train.lr": [0.01, 0]}}}},
     [], "node-lr-lr=0 on toy2d: --lr must be a positive number"),
])
def test_sweep_bad_input_is_one_line(tmp_path, content, args, message):
    path = tmp_path / ("study.yaml" if content is not None else "study.txt")
    path.write_text(yaml.safe_dump(content or {}))
    result = CliRunner().invoke(main, ["sweep", str(path), "--out", str(tmp_path / "o"), *args])
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not (tmp_path / "o").exists()


def test_a_killed_sweep_variant_resumes_with_train_resume_exactly(tmp_path, cli_env):
    """Issue 17: a variant's run folder stores its label as `method`; `train --resume` must accept
    it and, at the same thread count, finish with the uninterrupted run's metrics and weights."""
    import os
    import signal
    import subprocess
    import sys

    import torch
    from helpers import wait_for_checkpoints
    from zubov_bench.training.trainer import STATE_FILE

    study = {**STUDY, "variants": {"zubov-no-consistency": STUDY["variants"]["zubov-no-consistency"]},
             "train": {"default": {"epochs": 2, "save_every_steps": 7}},
             "eval": {**{k: v for k, v in STUDY["eval"].items() if k != "transfer_source"},
                      "attacks": [{"attack": "fgsm", "eps": [0.1]}]}}
    path = tmp_path / "ablation.yaml"
    path.write_text(yaml.safe_dump(study))
    env = {**cli_env, "OMP_NUM_THREADS": "1"}
    sweep = [sys.executable, "-m", "zubov_bench", "sweep", str(path), "--no-progress", "--jobs", "1",
             "--threads", "1", "--device", "cpu", "--out"]
    subprocess.run(sweep + [str(tmp_path / "ref")], env=env, check=True, capture_output=True)
    proc = subprocess.Popen(sweep + [str(tmp_path / "killed")], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    variant = Path("checkpoints") / "zubov-no-consistency-digits-s0"
    killed = tmp_path / "killed" / variant
    wait_for_checkpoints(killed / STATE_FILE, proc, count=2)  # mid-epoch: step 14 of epoch 0
    os.killpg(proc.pid, signal.SIGKILL)  # the sweep and any worker it started
    proc.wait()
    assert not (killed / "model.pt").exists(), "the variant finished before it was killed; kill earlier"
    assert yaml.safe_load((killed / "config.yaml").read_text())["method"] == "zubov-no-consistency"
    out = subprocess.run([sys.executable, "-m", "zubov_bench", "train", "--resume", str(killed), "--no-progress"],
                         env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    ref = tmp_path / "ref" / variant

    def rows(run):
        import csv
        return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in csv.DictReader(open(run / "metrics.csv"))]

    assert rows(killed) == rows(ref) and len(rows(ref)) == 2
    a, b = (torch.load(run / "model.pt", weights_only=True) for run in (killed, ref))
    assert a["extra"]["method"] == b["extra"]["method"] == "zubov-no-consistency"
    assert a["sha256"] == b["sha256"]


def test_the_manuals_example_study_plans_every_variant(tmp_path):
    """docs/sweep.md's study file is one a user copies: every variant, grid point and setting in it
    must be valid (planning checks each run's model and training settings, as `sweep` does first)."""
    text = (Path(__file__).resolve().parents[1] / "docs" / "sweep.md").read_text(encoding="utf-8")
    block = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    (name, data), = yaml.safe_load(block).items()
    preset = parse_preset(name, data)
    runs = plan_runs(preset, resolve_models(preset, None), tmp_path)
    assert {"zubov-c-level=0.5-lr=0.001", "zubov-no-consistency"} <= {run.method for run in runs}
