"""`--threads`: auto leaves room for other processes, an explicit count and OMP_NUM_THREADS win (issue 21)."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.device import auto_threads, configure_threads, thread_choice
from zubov_bench.errors import UserError


@pytest.fixture(autouse=True)
def keep_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("cores,load,expected", [(2, 0.0, 1), (2, 5.0, 1), (1, 0.0, 1), (16, 0.2, 15),
                                                 (16, 10.4, 6), (16, 40.0, 1), (8, 1.6, 6)])
def test_auto_leaves_a_core_and_the_busy_ones(cores, load, expected):
    assert auto_threads(cores, load) == expected


def test_explicit_count_wins_over_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert configure_threads("1") == "--threads 1" and torch.get_num_threads() == 1


def test_auto_respects_omp_num_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    torch.set_num_threads(3)  # as torch read it at start-up
    assert configure_threads("auto") == "OMP_NUM_THREADS=3" and torch.get_num_threads() == 3


def test_auto_without_omp_uses_auto_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr("os.cpu_count", lambda: 4)
    monkeypatch.setattr("os.getloadavg", lambda: (1.2, 1.0, 1.0))
    assert configure_threads(None) == "auto (4 cores, load 1.2)" == thread_choice()
    assert torch.get_num_threads() == 3


@pytest.mark.parametrize("bad", ["0", "-2", "x", "1.5"])
def test_bad_thread_count_is_a_user_error(bad):
    with pytest.raises(UserError, match="--threads must be a positive integer or auto"):
        configure_threads(bad)


def test_train_records_the_choice_and_gives_the_count_back(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    torch.set_num_threads(2)
    result = CliRunner().invoke(main, ["train", "--model", "node", "--epochs", "1", "--threads", "1",
                                       "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    env = json.loads((tmp_path / "run" / "env.json").read_text())
    assert env["threads"] == 1 and env["threads_chosen_by"] == "--threads 1"
    assert env["cpu"] and isinstance(env["git_dirty"], bool)  # what reproducibility depends on
    assert torch.get_num_threads() == 2  # the in-process caller's count is back


def test_bad_threads_on_the_command_line_is_one_line(tmp_path):
    result = CliRunner().invoke(main, ["eval", "-c", str(tmp_path / "none.pt"), "--threads", "zero"])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == ["error: --threads must be a positive integer or auto, got 'zero'"]
