"""Shared fixtures: small real data and quickly trained models (CPU, offline)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from zubov_bench.data import load_dataset
from zubov_bench.models import create_model

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def digits():
    return load_dataset("digits")


def quick_train(model, bundle, epochs: int, lr: float = 3e-3, batch_size: int = 64, seed: int = 0):
    """A minimal training loop for fixtures (the real trainer is tested separately)."""
    torch.manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        model.set_epoch(epoch)
        perm = torch.randperm(len(bundle.x_train), generator=g)
        for i in range(0, len(perm), batch_size):
            idx = perm[i:i + batch_size]
            loss, _ = model.training_loss(bundle.x_train[idx], bundle.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


@pytest.fixture(scope="session")
def trained_node(digits):
    """An undefended vanilla NODE on digits (about 95% test accuracy, a few seconds)."""
    torch.manual_seed(0)
    return quick_train(create_model("node", digits.spec), digits, epochs=6)


@pytest.fixture(scope="session")
def trained_zubov(digits):
    """A Zubov-Net on digits, short budget (a few epochs; > 85% test accuracy)."""
    torch.manual_seed(0)
    return quick_train(create_model("zubov", digits.spec), digits, epochs=4)


@pytest.fixture(scope="module")
def node_ckpt(trained_node, tmp_path_factory):
    """trained_node saved as a checkpoint file (path as a string), as `eval -c` takes it."""
    from zubov_bench.checkpoint import save_checkpoint

    path = tmp_path_factory.mktemp("ckpt") / "node.pt"
    save_checkpoint(path, trained_node, extra={"model": "node", "dataset": "digits", "seed": 0})
    return str(path)


@pytest.fixture
def cli_env(tmp_path):
    """Environment for running the real CLI in a subprocess, with an isolated data root."""
    env = dict(os.environ)
    env["ZUBOV_BENCH_DATA"] = str(tmp_path / "data")
    return env
