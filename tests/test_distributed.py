"""Multi-process training: the real CLI under torchrun (2 CPU processes, gloo) against one process."""
from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from helpers import wait_for_checkpoints
from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.errors import UserError
from zubov_bench.training import distributed, resolve_run_config, resume_run, train_run
from zubov_bench.training.trainer import STATE_FILE

pytestmark = pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()),
                                reason="this torch build has no torch.distributed gloo backend")

ARGS = ["train", "--model", "node", "--dataset", "digits", "--epochs", "3", "--seed", "1",
        "--device", "cpu", "--no-progress", "--save-every-steps", "7"]
RUN_FILES = {"config.yaml", "env.json", "last.pt", "metrics.csv", "model.pt", "summary.json"}


def single(args):
    return [sys.executable, "-m", "zubov_bench", *args]


def torchrun(args):
    return [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
            "-m", "zubov_bench", *args]


def run(cmd, env):
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out


def metrics(run_dir):
    rows = list(csv.DictReader(open(run_dir / "metrics.csv")))
    return [{k: float(v) for k, v in r.items() if k not in ("stage", "epoch_seconds")} for r in rows]


def weights(run_dir):
    return torch.load(run_dir / "model.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    out = dict(os.environ, OMP_NUM_THREADS="1")
    out["ZUBOV_BENCH_DATA"] = str(tmp_path_factory.mktemp("data"))
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        out.pop(key, None)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env):
    """The same 3-epoch run in one process and under torchrun with two processes."""
    root = tmp_path_factory.mktemp("runs")
    one = run(single(ARGS + ["--out", str(root / "one")]), env)
    two = run(torchrun(ARGS + ["--out", str(root / "two")]), env)
    return {"one": root / "one", "two": root / "two", "two_stdout": two.stdout, "one_stdout": one.stdout}


def test_two_processes_train_like_one(runs):
    # Each step both processes train on their half of the very batch one process trains on, and
    # DDP averages share-weighted gradients: the same maths, summed in another order. Measured
    # gap: ~1e-7 in weights and metrics after 66 steps. Tolerances: 1e-4 in weights (float32
    # rounding, grown over 66 Adam steps), and 1 percentage point (4 of 450 images) in test
    # accuracy, since a rounding-level change can only flip images on a decision boundary.
    # Without the gradient all-reduce the weights differ by ~1e-1.
    one, two = metrics(runs["one"]), metrics(runs["two"])
    assert [r["steps"] for r in two] == [r["steps"] for r in one] == [22, 44, 66]
    assert abs(two[-1]["test_acc"] - one[-1]["test_acc"]) <= 0.01
    for a, b in zip(one, two):
        assert b["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4)
    w1, w2 = weights(runs["one"]), weights(runs["two"])
    assert w1.keys() == w2.keys()
    assert max(float((w1[k] - w2[k]).abs().max()) for k in w1) < 1e-4


def test_only_rank_zero_writes_and_reports(runs):
    assert {p.name for p in runs["two"].iterdir()} == RUN_FILES  # no stray or per-rank files
    assert runs["two_stdout"].count("test accuracy") == 1
    model, meta = load_checkpoint(runs["two"] / "model.pt")
    assert meta["model"] == "node" and meta["extra"]["test_acc"] == metrics(runs["two"])[-1]["test_acc"]


def test_killed_torchrun_resumes_exactly(runs, env, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen(torchrun(ARGS + ["--out", str(killed)]), env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_checkpoints(killed / STATE_FILE, proc, count=2, timeout=240)
    os.killpg(proc.pid, signal.SIGKILL)  # torchrun and both workers, mid-epoch
    proc.wait()
    assert not (killed / "model.pt").exists(), "the run finished before it was killed; kill earlier"
    run(torchrun(["train", "--resume", str(killed), "--no-progress"]), env)
    assert metrics(killed) == metrics(runs["two"])
    w1, w2 = weights(killed), weights(runs["two"])
    assert all(torch.equal(w1[k], w2[k]) for k in w1)


def test_resume_with_another_process_count_is_refused(runs, tmp_path):
    copy = shutil.copytree(runs["two"], tmp_path / "copy")
    with pytest.raises(UserError, match="trained with 2 process.*torchrun --nproc_per_node=2"):
        resume_run(copy, device="cpu", progress=False)


def test_a_batch_smaller_than_the_process_count_is_refused(monkeypatch):
    monkeypatch.setattr(distributed, "world_size", lambda: 4)
    with pytest.raises(UserError, match="--batch-size 3 is smaller than the 4 processes"):
        distributed.check_batch_size(3)


def test_ranks_other_than_zero_write_nothing(monkeypatch, tmp_path):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    resolved = resolve_run_config("node", "digits", None, {"epochs": 1, "save_every_steps": 5}, {})
    summary = train_run(resolved, tmp_path / "run", device="cpu", progress=False)
    assert summary["sha256"] is None and not (tmp_path / "run").exists()


def test_rank_batches_split_the_single_process_batch(monkeypatch):
    perm = torch.randperm(11)
    monkeypatch.setattr(distributed, "world_size", lambda: 3)
    monkeypatch.setattr(distributed, "is_distributed", lambda: True)
    for step in range(3):  # batches of 4, 4 and a last one of 3
        parts = []
        for r in range(3):
            monkeypatch.setattr(distributed, "rank", lambda r=r: r)
            idx, share = distributed.rank_batch(perm, step, 4)
            parts.append((idx, share))
        assert torch.equal(torch.cat([i for i, _ in parts]), perm[step * 4:(step + 1) * 4])
        assert sum(s for _, s in parts) == pytest.approx(1.0)
    monkeypatch.setattr(distributed, "rank", lambda: 2)
    idx, share = distributed.rank_batch(perm[:5], 1, 4)  # last batch of 1: rank 2 has none
    assert share == 0.0 and len(idx) == 1  # a stand-in example with zero weight
