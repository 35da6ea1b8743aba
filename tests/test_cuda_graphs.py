"""`--cuda-graphs`: the solver loop traces as one graph; on a CPU the flag changes nothing (issue 21)."""
from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.data import load_dataset
from zubov_bench.models import create_model, fixed_grid
from zubov_bench.models.ode import (CountingField, SolverConfig, cuda_graphs_enabled, graphed_loop, integrate,
                                    use_cuda_graphs)


@pytest.mark.parametrize("model_name", ["node", "zubov"])
def test_the_fixed_step_loop_is_one_graph_without_breaks(model_name):
    """What CUDA-graph capture needs: torch.compile sees the whole loop (field calls included) as one
    graph, with no host read breaking it. The eager backend traces without compiling kernels."""
    data = load_dataset("digits")
    torch.manual_seed(0)
    model = create_model(model_name, data.spec).eval()
    z0 = model.features(data.x_test[:8])
    key, step = (0.0, 1.0), 0.1
    plan = fixed_grid._plan(key, z0.dtype, step)
    stages = fixed_grid._device_stages(key, z0.dtype, step, z0.device)
    explained = torch._dynamo.explain(fixed_grid.run_plan)(model.odefunc, z0, stages, plan.dts, plan.outputs, "rk4")
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_the_traced_loop_gives_the_eager_states_and_counts_evaluations():
    torch.manual_seed(0)
    func = CountingField(create_model("node", load_dataset("digits").spec).odefunc.field)
    z0 = torch.randn(5, 64, requires_grad=True)
    eager = fixed_grid.solve_fixed(func, z0, (0.0, 0.5, 1.0), "rk4", 0.1)
    func.nfe = 0
    traced = fixed_grid.solve_fixed(func, z0, (0.0, 0.5, 1.0), "rk4", 0.1,
                                    graphed_loop(backend="eager", mode=None))
    assert torch.equal(traced, eager) and func.nfe == 40  # the NFE counter still counts inside the graph
    grad, = torch.autograd.grad(traced.sum(), z0)
    assert torch.equal(grad, torch.autograd.grad(eager.sum(), z0)[0])


def test_the_switch_is_a_no_op_for_cpu_solves():
    torch.manual_seed(0)
    func = CountingField(create_model("node", load_dataset("digits").spec).odefunc.field)
    z0 = torch.randn(5, 64)
    before = integrate(func, z0, SolverConfig("rk4", steps=10))
    previous = use_cuda_graphs(True)
    try:
        assert torch.equal(integrate(func, z0, SolverConfig("rk4", steps=10)), before)
    finally:
        use_cuda_graphs(previous)


def test_train_with_the_flag_on_a_cpu_notes_it_and_trains_the_same_weights(tmp_path):
    runs = {}
    for flag in ([], ["--cuda-graphs"]):
        out = tmp_path / ("flag" if flag else "plain")
        result = CliRunner().invoke(main, ["train", "--model", "node", "--epochs", "1", "--threads", "1",
                                           "--no-progress", "--device", "cpu", "--out", str(out), *flag])
        assert result.exit_code == 0, result.output
        runs[bool(flag)] = (out, result.output)
    assert "note: --cuda-graphs does nothing without a CUDA device" in runs[True][1]
    assert "--cuda-graphs" not in runs[False][1]
    weights = [torch.load(runs[f][0] / "model.pt", weights_only=True)["state_dict"] for f in (False, True)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
    assert json.loads((runs[True][0] / "env.json").read_text())["cuda_graphs"] is False
    assert not cuda_graphs_enabled()


def test_cuda_presets_scale_the_batch_unless_one_is_given(monkeypatch):
    from zubov_bench.presets import CUDA_BATCH_SCALE
    from zubov_bench.training import resolve_run_config

    cpu = resolve_run_config("node", "fashion-mnist", None, {}, {}, "cpu")["train"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # resolve_device only asks this
    cuda = resolve_run_config("node", "fashion-mnist", None, {}, {}, "cuda")["train"]
    scale = CUDA_BATCH_SCALE["fashion-mnist"]
    assert scale > 1
    assert (cuda["batch_size"], cuda["lr"]) == (scale * cpu["batch_size"], pytest.approx(scale ** 0.5 * cpu["lr"]))
    given = resolve_run_config("node", "fashion-mnist", None, {"batch_size": 100}, {}, "cuda")["train"]
    assert (given["batch_size"], given["lr"]) == (100, cpu["lr"])  # a given batch keeps the preset's lr
    lr_given = resolve_run_config("node", "fashion-mnist", None, {"lr": 0.01}, {}, "cuda")["train"]
    assert (lr_given["batch_size"], lr_given["lr"]) == (scale * cpu["batch_size"], 0.01)
    digits = resolve_run_config("node", "digits", None, {}, {}, "cuda")["train"]
    assert digits == resolve_run_config("node", "digits", None, {}, {}, "cpu")["train"]  # small: unscaled
