"""A model from outside this repository registers through the `zubov_bench.models` entry point
and goes through list, train, load and eval like a built-in one (real CLI, in subprocesses)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

FIXTURE = Path(__file__).parent / "plugin_fixture" / "zb_demo_plugin.py"
CLI = str(Path(sys.executable).parent / "zubov-bench")
REPO = Path(__file__).resolve().parents[1]


def install_without_pip(site: Path) -> None:
    """What `pip install zb-demo-plugin` would leave behind: the module plus its dist-info."""
    site.mkdir()
    shutil.copy(FIXTURE, site / FIXTURE.name)
    info = site / "zb_demo_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zb-demo-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[zubov_bench.models]\ndemo-ode = zb_demo_plugin\n")


def run(args, env, cwd, timeout=300):
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{args[:3]} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}"
    return out.stdout


@pytest.fixture
def plugin_env(tmp_path, cli_env):
    site = tmp_path / "site"
    install_without_pip(site)
    env = dict(cli_env, PYTHONPATH=os.pathsep.join(filter(None, [str(site), cli_env.get("PYTHONPATH")])))
    env["OMP_NUM_THREADS"] = "1"
    return env


def test_plugin_is_absent_without_its_distribution(cli_env, tmp_path):
    assert "demo-ode" not in run([CLI, "list", "models"], cli_env, tmp_path)


def test_entry_point_model_is_listed_trained_loaded_and_evaluated(plugin_env, tmp_path):
    listing = run([CLI, "list", "models"], plugin_env, tmp_path)
    assert "demo-ode" in listing and "entry-point example" in listing
    for name in ("tisode", "sodef", "lyanet", "stable", "fxts"):
        assert name in listing  # a plugin adds to the built-in models, it does not replace them

    run_dir = tmp_path / "run"
    run([CLI, "train", "--model", "demo-ode", "--dataset", "digits", "--epochs", "2",
         "--out", str(run_dir), "--no-progress"], plugin_env, tmp_path)
    assert (run_dir / "model.pt").is_file()
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert resolved["train"]["lr"] == 5e-3  # the plugin's own register_preset recipe was applied

    check = (
        "import json, sys\n"
        "from zubov_bench.checkpoint import load_checkpoint\n"
        "from zubov_bench.data import load_dataset\n"
        "from zubov_bench.training import accuracy\n"
        "model, meta = load_checkpoint(sys.argv[1])\n"
        "data = load_dataset('digits')\n"
        "print(json.dumps({'model': meta['model'], 'cls': type(model).__module__,\n"
        "                  'acc': accuracy(model, data.x_test, data.y_test, 500)}))\n"
    )
    loaded = json.loads(run([sys.executable, "-c", check, str(run_dir / "model.pt")], plugin_env, tmp_path))
    assert loaded["model"] == "demo-ode" and loaded["cls"] == "zb_demo_plugin"
    assert loaded["acc"] > 0.6  # chance is 0.1

    if not (REPO / "zubov_bench" / "cli" / "eval_cmd.py").is_file():
        pytest.skip("no `zubov-bench eval` in this checkout")
    out_dir = tmp_path / "eval"
    run([CLI, "eval", "--checkpoint", str(run_dir / "model.pt"), "--attack", "fgsm", "--n-samples", "50",
         "--out", str(out_dir), "--no-progress"], plugin_env, tmp_path)
    records = [json.loads(line) for line in (out_dir / "records.jsonl").read_text().splitlines() if line]
    fgsm = [r for r in records if r["perturbation"] == "fgsm"]
    assert fgsm and all(r["model"] == "demo-ode" for r in fgsm)
    assert all(r["robust_acc"] <= r["clean_acc"] for r in fgsm) and fgsm[0]["clean_acc"] > 0.6
