"""Host synchronisations: the counter sees them, and our PGD iteration makes none (issue 21, item 5)."""
from __future__ import annotations

import pytest
import torch

from zubov_bench.data import load_dataset
from zubov_bench.evaluation.host_sync import HostSyncCounter, syncs_per_iteration
from zubov_bench.models import create_model
from zubov_bench.perturbations.pgd import PGDParams, pgd_once


def test_counter_sees_host_reads_and_data_dependent_shapes():
    x = torch.randn(8)
    with HostSyncCounter() as syncs:
        x.sum().item()
        bool(x.sum() > 0)
        x[x > 0]
        x[x > 0] = 0.0
        (x > 0).nonzero()
        x.tolist()
    assert syncs.counts["_local_scalar_dense.default"] == 2
    assert syncs.counts["index.Tensor (boolean mask)"] == 1
    assert syncs.counts["index_put_.default (boolean mask)"] == 1
    assert syncs.counts["nonzero.default"] == 1
    assert syncs.counts["Tensor.tolist"] == 1
    with HostSyncCounter() as none:
        y = torch.where(x > 0, x, -x).clamp(0, 1) * 2
        y[torch.tensor([0, 2])]  # integer indexing has a known shape
    assert none.total == 0
    assert torch.Tensor.tolist is not None and "wrapped" not in torch.Tensor.tolist.__name__  # restored


def test_per_iteration_count_cancels_fixed_costs_and_catches_an_item_in_the_loop():
    def loop(n, read_back):
        x = torch.randn(4)
        (x > 0).nonzero()  # once per call: cancels
        for _ in range(n):
            x = x * 0.5
            if read_back:
                x.max().item()
    assert syncs_per_iteration(lambda n: loop(n, False))[0] == 0
    per_iteration, ops = syncs_per_iteration(lambda n: loop(n, True))
    assert per_iteration == 1 and ops == {"_local_scalar_dense.default": 4}


@pytest.mark.parametrize("model_name", ["node", "zubov"])
@pytest.mark.parametrize("norm,loss", [("linf", "ce"), ("l2", "ce"), ("linf", "dlr")])
def test_our_pgd_iteration_makes_no_host_synchronisation(model_name, norm, loss):
    """The PGD loop and the deployed fixed-step solver read nothing back from the device, so a GPU
    runs an attack iteration without waiting. An `.item()`, a `bool(tensor)` or a boolean-mask
    index added to the loop, the models' forward or the solver makes this fail."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model(model_name, data.spec).eval()
    x, y = data.x_test[:6], data.y_test[:6]
    eps = 0.1

    def attack(steps):
        params = PGDParams(norm=norm, loss=loss, steps=steps)
        pgd_once(model, x, y, eps, 2.5 * eps / steps, params)
    per_iteration, ops = syncs_per_iteration(attack, (1, 3))
    assert per_iteration == 0, f"host synchronisations per PGD iteration: {dict(ops)}"
