"""`train --compile`: torch.compile of the vector field, with unchanged checkpoints."""
from __future__ import annotations

import dataclasses
import os
import shutil

import pytest
import torch
from torch import nn

from zubov_bench.checkpoint import load_checkpoint
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.models.ode import compile_field
from zubov_bench.training import Trainer, TrainConfig, resolve_run_config


def _compiler_missing() -> str | None:
    if not hasattr(torch, "compile"):
        return f"torch {torch.__version__} has no torch.compile"
    if shutil.which(os.environ.get("CXX", "g++")) is None:
        return "torch.compile's CPU backend needs a C++ compiler (g++ or $CXX), none found"
    return None


@pytest.mark.skipif(_compiler_missing() is not None, reason=str(_compiler_missing()))
def test_a_compiled_field_trains_and_saves_a_checkpoint_an_uncompiled_model_loads(digits, tmp_path):
    from torch._dynamo.utils import counters

    # 256 training images in batches of 64, 64 test images: 4 steps, one shape per graph.
    small = dataclasses.replace(digits, x_train=digits.x_train[:256], y_train=digits.y_train[:256],
                                x_test=digits.x_test[:64], y_test=digits.y_test[:64])
    torch.manual_seed(0)
    model = create_model("node", small.spec)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = TrainConfig(epochs=1, batch_size=64, lr=3e-3, progress=False, compile=True)
    counters.clear()
    Trainer(model, small, cfg, tmp_path, {"model": "node", "dataset": "digits", "seed": 0}).fit()
    assert counters["stats"]["unique_graphs"] >= 1  # dynamo really compiled the field
    assert list(model.state_dict()) == list(before)  # no `_orig_mod.` prefixes
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())  # it trained
    loaded, _ = load_checkpoint(tmp_path / "model.pt")
    assert loaded.odefunc.field._compiled_call_impl is None
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(loaded(small.x_test), model(small.x_test), rtol=1e-4, atol=1e-5)


def test_compile_is_a_train_setting_off_by_default():
    assert TrainConfig().compile is False
    resolved = resolve_run_config("node", "digits", None, {"compile": True}, {})
    assert resolved["train"]["compile"] is True


def test_compile_needs_a_vector_field():
    with pytest.raises(UserError, match="no ODE vector field"):
        compile_field(nn.Linear(2, 2))
