"""Training reliability: exact resume after SIGKILL, safe checkpoints, numerical faults, determinism."""
from __future__ import annotations

import csv
import pickle
import signal
import subprocess
import sys

import pytest
import torch

from helpers import wait_for_checkpoints
from zubov_bench.checkpoint import load_checkpoint, read_payload, save_checkpoint, state_hash
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.models.node import NeuralODE
from zubov_bench.training import NumericalError, resolve_run_config, train_run
from zubov_bench.training.trainer import STATE_FILE

TRAIN = [sys.executable, "-m", "zubov_bench", "train", "--no-progress", "--device", "cpu"]


def metrics(run):
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    for r in rows:
        r.pop("epoch_seconds")
    return rows


def weights(run):
    return torch.load(run / "model.pt", weights_only=True)["state_dict"]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


@pytest.mark.parametrize("model,extra", [("node", []), ("zubov", []), ("node", ["--label", "node-abl"])],
                         ids=["node", "zubov", "labelled"])  # a label is stored as `method` (issue 17)
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path, cli_env, model, extra):
    args = ["--model", model, "--dataset", "digits", "--epochs", "3", "--save-every-steps", "7",
            "--seed", "3", *extra]
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    subprocess.run(TRAIN + args + ["--out", str(ref)], env=cli_env, check=True, capture_output=True)
    proc = subprocess.Popen(TRAIN + args + ["--out", str(killed)], env=cli_env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # Kill right after the step-14 checkpoint: mid-epoch, with unsaved steps in flight.
    wait_for_checkpoints(killed / STATE_FILE, proc, count=2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "model.pt").exists(), "the run finished before it was killed; kill earlier"
    out = subprocess.run(TRAIN + ["--resume", str(killed)], env=cli_env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert metrics(killed) == metrics(ref)
    assert_same_weights(weights(killed), weights(ref))


def test_same_seed_trains_identically(tmp_path):
    resolved = resolve_run_config("zubov", "digits", None, {"epochs": 2, "seed": 5}, {})
    for name in ("a", "b"):
        train_run(resolved, tmp_path / name, progress=False, device="cpu")
    assert metrics(tmp_path / "a") == metrics(tmp_path / "b")
    assert_same_weights(weights(tmp_path / "a"), weights(tmp_path / "b"))


def _grads_of_zubov_loss(data_x, data_y):
    torch.manual_seed(0)
    model = create_model("zubov", _digits().spec)
    loss, _ = model.training_loss(data_x, data_y)
    return torch.autograd.grad(loss, [p for p in model.parameters() if p.requires_grad])


def _digits():
    from zubov_bench.data import load_dataset
    return load_dataset("digits")


def test_zubov_loss_gradients_are_bitwise_repeatable_with_two_threads():
    # Regression: the backward of `equilibria[cls]` accumulated in thread-timing order, so two
    # same-seed runs drifted apart in the 8th digit on a loaded 2-core machine.
    data, threads = _digits(), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        runs = [_grads_of_zubov_loss(data.x_train[:64], data.y_train[:64]) for _ in range(4)]
    finally:
        torch.set_num_threads(threads)
    for other in runs[1:]:
        assert all(torch.equal(a, b) for a, b in zip(runs[0], other))


def test_deterministic_mode_makes_indexing_backward_repeatable_and_is_restored():
    from zubov_bench.device import deterministic_algorithms
    table, index = torch.randn(10, 64, requires_grad=True), torch.randint(0, 10, (4000,))
    weight, threads = torch.randn(4000, 64), torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        with deterministic_algorithms(True, torch.device("cpu")):
            assert torch.are_deterministic_algorithms_enabled()
            grads = [torch.autograd.grad((table[index] * weight).sum(), table)[0] for _ in range(5)]
    finally:
        torch.set_num_threads(threads)
    assert not torch.are_deterministic_algorithms_enabled()
    assert all(torch.equal(grads[0], g) for g in grads[1:])


class _Evil:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))  # would create a file if unpickled


def test_malicious_pickle_is_refused_and_never_executed(tmp_path, digits):
    target = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    model = create_model("node", digits.spec)
    payload = {"format": "zubov-bench-checkpoint/1", "model": "node", "config": model.config_dict(),
               "data": digits.spec.to_dict(), "state_dict": model.state_dict(), "sha256": "x",
               "extra": {"hook": _Evil(str(target))}}
    torch.save(payload, evil)
    with pytest.raises(UserError, match=r"references code \(io.open\), which safe loading"):
        load_checkpoint(evil)
    assert not target.exists()
    # and the payload really is malicious: plain unpickling creates the file
    pickle.loads(pickle.dumps(_Evil(str(target))))
    assert target.exists()


@pytest.fixture
def saved_node(tmp_path, digits):
    torch.manual_seed(0)
    model = create_model("node", digits.spec)
    path = tmp_path / "model.pt"
    save_checkpoint(path, model)
    return path


def test_tampered_checkpoint_fails_its_hash(saved_node):
    payload = read_payload(saved_node)
    payload["state_dict"]["head.bias"] += 1.0
    torch.save(payload, saved_node)
    with pytest.raises(UserError, match="integrity check"):
        load_checkpoint(saved_node)


def test_truncated_checkpoint_is_one_clear_error(saved_node):
    data = saved_node.read_bytes()
    saved_node.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="corrupt or truncated file"):
        load_checkpoint(saved_node)


def test_wrong_model_checkpoint_is_one_clear_error(saved_node):
    payload = read_payload(saved_node)
    payload["model"] = "zubov"
    payload["config"] = {"d": 64}
    payload["sha256"] = state_hash("zubov", payload["config"], payload["state_dict"])
    torch.save(payload, saved_node)
    with pytest.raises(UserError, match="does not match model 'zubov'"):
        load_checkpoint(saved_node)


def nan_loss_at_call(monkeypatch, call: int) -> None:
    """Make the NODE's training loss NaN at its `call`-th evaluation (1-based)."""
    original = NeuralODE.training_loss
    calls = {"n": 0}

    def flaky(self, x, y):
        calls["n"] += 1
        loss, terms = original(self, x, y)
        return (loss * float("nan") if calls["n"] == call else loss), terms

    monkeypatch.setattr(NeuralODE, "training_loss", flaky)


def test_nan_loss_stops_with_epoch_and_step_and_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    nan_loss_at_call(monkeypatch, 30)
    resolved = resolve_run_config("node", "digits", None, {"epochs": 3}, {})  # 22 steps/epoch
    run = tmp_path / "run"
    with pytest.raises(NumericalError, match=r"epoch 2, step 8.*kept in .*last.pt"):
        train_run(resolved, run, progress=False, device="cpu")
    assert not (run / "model.pt").exists()
    state = torch.load(run / STATE_FILE, weights_only=True)
    assert state["progress"]["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_nan_loss_before_any_checkpoint_does_not_promise_one(tmp_path, monkeypatch):
    """Issue 20: at epoch 1, step 2 there is no last.pt, so the message must not say one is kept."""
    nan_loss_at_call(monkeypatch, 2)
    resolved = resolve_run_config("node", "digits", None, {"epochs": 1}, {})
    with pytest.raises(NumericalError, match=r"epoch 1, step 2.*no checkpoint had been saved yet") as caught:
        train_run(resolved, tmp_path / "run", progress=False, device="cpu")
    assert "kept" not in str(caught.value) and not (tmp_path / "run" / STATE_FILE).exists()


def test_solver_step_limit_stops_training_with_a_clear_message(tmp_path):
    resolved = resolve_run_config("node", "digits", None, {"epochs": 1},
                                  {"solver": "dopri5", "rtol": 1e-9, "atol": 1e-9, "max_num_steps": 3})
    with pytest.raises(NumericalError, match=r"max_num_steps.*epoch 1, step 1"):
        train_run(resolved, tmp_path / "run", progress=False, device="cpu")
