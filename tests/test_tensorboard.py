"""`train --log tensorboard`: every metrics.csv column as a TensorBoard scalar per epoch."""
from __future__ import annotations

import builtins
import csv

import pytest
import yaml
from click.testing import CliRunner

from zubov_bench.cli import main

pytest.importorskip("tensorboard")


def train(run_dir, *extra):
    return CliRunner().invoke(main, ["train", "--model", "node", "--dataset", "digits", "--epochs", "2",
                                     "--no-progress", "--device", "cpu", "--out", str(run_dir), *extra])


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_event_files_hold_every_loss_term_and_accuracy_per_epoch(tmp_path):
    run = tmp_path / "run"
    result = train(run, "--log", "tensorboard")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    scalars = read_scalars(run / "tensorboard")
    terms = [k for k in rows[0] if k.startswith("train_")]
    assert {"train_loss", "train_cls", "train_acc"} <= set(terms)  # every term the model logs
    for key in terms + ["test_acc", "lr"]:
        assert [step for step, _ in scalars[key]] == [1, 2], key
        assert [v for _, v in scalars[key]] == pytest.approx([float(r[key]) for r in rows], rel=1e-6), key
    assert yaml.safe_load(open(run / "config.yaml"))["train"]["log"] == "tensorboard"  # resume keeps it


def test_without_the_flag_no_event_files(tmp_path):
    run = tmp_path / "run"
    assert train(run, "--epochs", "1").exit_code == 0
    assert (run / "metrics.csv").is_file() and not (run / "tensorboard").exists()


def test_missing_extra_is_a_one_line_error(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name == "tensorboard" or name.startswith("torch.utils.tensorboard"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)
    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    result = train(tmp_path / "run", "--log", "tensorboard")
    assert result.exit_code != 0 and "Traceback" not in result.output
    assert "pip install 'zubov-bench[tensorboard]'" in result.output
    assert not (tmp_path / "run" / "model.pt").exists()
