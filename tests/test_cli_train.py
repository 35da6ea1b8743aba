"""The real `zubov-bench` CLI: train end to end, and bad input as one line with a non-zero exit."""
from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch
import yaml

from zubov_bench.checkpoint import load_checkpoint


def run_cli(args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "zubov_bench", *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=600)


def test_help_lists_the_commands():
    out = run_cli(["--help"])
    assert out.returncode == 0
    for cmd in ("train", "list"):
        assert cmd in out.stdout


def test_train_writes_a_complete_run_folder(tmp_path, cli_env):
    run = tmp_path / "run"
    out = run_cli(["train", "--model", "node", "--dataset", "digits", "--epochs", "3",
                   "--no-progress", "--out", str(run), "--device", "cpu"], env=cli_env)
    assert out.returncode == 0, out.stderr
    for name in ("model.pt", "config.yaml", "metrics.csv", "env.json", "summary.json"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert len(rows) == 3 and {"train_loss", "train_cls", "train_acc", "test_acc"} <= set(rows[0])
    assert float(rows[-1]["test_acc"]) > 0.8
    cfg = yaml.safe_load(open(run / "config.yaml"))
    assert cfg["model"] == "node" and cfg["train"]["epochs"] == 3
    torch.load(run / "model.pt", weights_only=True)  # safe to load
    model, meta = load_checkpoint(run / "model.pt")
    assert meta["model"] == "node" and meta["extra"]["test_acc"] == float(rows[-1]["test_acc"])
    assert "method" not in meta["extra"]  # tables label it by its model name
    # a second run into the same folder is refused rather than silently overwriting it
    again = run_cli(["train", "--model", "node", "--out", str(run), "--no-progress"], env=cli_env)
    assert again.returncode != 0 and "already holds a run" in again.stderr


def test_training_from_an_older_runs_config_names_the_settings_it_leaves_open(tmp_path, cli_env):
    """A run's config.yaml pins every setting its code had; one written before a setting existed
    leaves it to today's value, and `train --config` says which, with the value it takes."""
    run = tmp_path / "run"
    args = ["train", "--epochs", "1", "--no-progress", "--device", "cpu"]
    first = run_cli([*args, "--model", "node", "--out", str(run)], env=cli_env)
    assert first.returncode == 0, first.stderr
    again = run_cli([*args, "--config", str(run / "config.yaml"), "--out", str(tmp_path / "again")], env=cli_env)
    assert again.returncode == 0 and "note:" not in again.stderr, again.stderr
    older = yaml.safe_load(open(run / "config.yaml"))
    del older["train"]["adv_fraction"], older["model_config"]["noise_aug"]
    (run / "config.yaml").write_text(yaml.safe_dump(older))
    out = run_cli([*args, "--config", str(run / "config.yaml"), "--out", str(tmp_path / "older")], env=cli_env)
    assert out.returncode == 0, out.stderr
    note = next(line for line in out.stderr.splitlines() if line.startswith("note:"))
    assert "train.adv_fraction=1.0" in note and "model_config.noise_aug=0.0" in note
    # a bad value given with it is the one line the user sees, not after a note on a run never started
    bad = run_cli([*args, "--config", str(run / "config.yaml"), "--epochs", "0", "--out", str(tmp_path / "bad")],
                  env=cli_env)
    assert bad.returncode != 0 and bad.stderr.strip().splitlines() == ["error: --epochs must be >= 1, got 0"], \
        bad.stderr
    # a config file that is not a run's (no env.json beside it) is a partial config by design
    (run / "env.json").unlink()
    plain = run_cli([*args, "--config", str(run / "config.yaml"), "--out", str(tmp_path / "plain")], env=cli_env)
    assert plain.returncode == 0 and "note:" not in plain.stderr, plain.stderr


def _corrupt_run(tmp_path):
    run = tmp_path / "broken"
    run.mkdir()
    (run / "config.yaml").write_text("model: node\ndataset: digits\ntrain: {}\nmodel_config: {}\n")
    (run / "last.pt").write_bytes(b"\x00garbage, not a checkpoint")
    return run


BAD_INPUT = [
    (["train", "--model", "nope"], "unknown model 'nope'"),
    (["train", "--model", "node", "--dataset", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", "--model", "node", "--config", "missing.yaml"], "config file not found"),
    (["train", "--model", "node", "--lr", "-0.1"], "--lr must be a positive number"),
    (["train", "--model", "node", "--lr", "nan"], "lr=nan is not a valid float"),
    (["train", "--model", "node", "--epochs", "0"], "--epochs must be >= 1"),
    (["train", "--model", "node", "--batch-size", "0"], "--batch-size must be >= 1"),
    (["train", "--model", "node", "--adv-eps", "2"], "adv_eps must be in [0, 1]"),
    (["train", "--model", "node", "--set", "d=abc"], "not a valid int"),
    (["train", "--model", "node", "--set", "bogus=1"], "unknown config key"),
    (["train", "--model", "node", "--dataset", "mnist"], "not found under"),
    (["train", "--model", "node", "--config", "{bad_yaml}"], "cannot parse config file"),
    (["train", "--resume", "{corrupt_run}"], "last.pt: corrupt or truncated file"),
    (["train", "--model", "node", "--out", "/dev/null/run"], "cannot"),
    (["train", "--resume", "{corrupt_run}", "--dataset", "fashion-mnist"], "--dataset fashion-mnist does not match"),
    (["train", "--resume", "{corrupt_run}", "--model", "zubov"], "--model zubov does not match"),
    (["train", "--resume", "{corrupt_run}", "--epochs", "9"], "--epochs cannot be combined with --resume"),
    (["train", "--resume", "{corrupt_run}", "--lr", "0.1"], "--lr cannot be combined with --resume"),
    # issue 20: these ended in a traceback or were silently accepted
    (["train", "--config", "{list_model}"], "'model' must be a name"),
    (["train", "--model", "node", "--config", "{latin1_config}"], "is not UTF-8 text"),
    (["train", "--model", "node", "--out", "r" * 300], "file systems allow 255"),
    (["train", "--model", "node", "--config", "{bool_epochs}"], "training key epochs: expected a number, got true"),
    # click's own usage errors are one line too
    (["train", "--model", "node", "--epochs", "abc"], "'abc' is not a valid integer"),
    (["train", "--model", "node", "--device", "tpu"], "'tpu' is not one of"),
    (["train", "--model", "node", "--bogus"], "No such option '--bogus'"),
    (["bogus"], "No such command 'bogus'"),
    (["plot", "--results", "."], "Missing option '--out'"),
]


@pytest.mark.parametrize("args,message", BAD_INPUT, ids=[" ".join(a[1:3]) + "|" + m[:20] for a, m in BAD_INPUT])
def test_bad_input_is_one_line_and_nonzero(args, message, tmp_path, cli_env):
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("model: [unclosed\n")
    configs = {"list_model": "model: [node]\n", "bool_epochs": "train: {epochs: true}\n"}
    for name, text in configs.items():
        (tmp_path / f"{name}.yaml").write_text(text)
    (tmp_path / "latin1_config.yaml").write_bytes("model: node\n# caf\xe9\n".encode("latin-1"))
    subs = {"{bad_yaml}": str(bad_yaml), "{corrupt_run}": str(_corrupt_run(tmp_path)),
            **{f"{{{name}}}": str(tmp_path / f"{name}.yaml") for name in (*configs, "latin1_config")}}
    given_epochs = "--epochs" in args or "--resume" in args or "--config" in args  # a config may set epochs
    args = [subs.get(a, a) for a in args] + ["--no-progress", "--epochs", "1"] * (args[0] == "train" and not given_epochs)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    out = run_cli(args, env=cli_env, cwd=tmp_path)
    assert out.returncode != 0
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "Traceback" not in out.stderr and message in lines[0], lines[0]
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written


def test_label_names_the_method_in_checkpoint_and_records(tmp_path, cli_env):
    from zubov_bench.evaluation import evaluate

    run = tmp_path / "run"
    out = run_cli(["train", "--model", "node", "--dataset", "digits", "--epochs", "1", "--label", "node-abl",
                   "--no-progress", "--out", str(run), "--device", "cpu"], env=cli_env)
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(open(run / "config.yaml"))["method"] == "node-abl"
    records = evaluate([str(run / "model.pt")], attacks=["gaussian"], eps="0.1", n_samples=20, batch_size=20,
                       out=tmp_path / "eval", progress=False, log=lambda m: None, device="cpu")
    assert {r.method for r in records} == {"node-abl"} and {r.model for r in records} == {"node"}
