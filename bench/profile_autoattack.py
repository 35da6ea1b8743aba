"""Why is AutoAttack slow on a GPU? Time pyautoattack on a committed FashionMNIST checkpoint, with
torch's deterministic kernels on and off, per sub-attack, and profile one APGD-CE run for its
top operators and host-device synchronisations.

    python bench/profile_autoattack.py --device cuda            # about a minute or two on a GPU
    python bench/profile_autoattack.py --device cpu --images 50  # the same on a CPU, for comparison

On an H200, AutoAttack standard on `node` ran slower than on one CPU core (bench/RESULTS.md);
this script is the first thing to run where a GPU is available again.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from torch.profiler import ProfilerActivity, profile  # noqa: E402

from common import ROOT, sync, table, timed  # noqa: E402
from zubov_bench.device import deterministic_algorithms, resolve_device  # noqa: E402
from zubov_bench.evaluation.context import load_context  # noqa: E402
from zubov_bench.evaluation.solver_view import GradientView, GradSolver  # noqa: E402
from zubov_bench.perturbations.autoattack import VERSION_ATTACKS, run_autoattack  # noqa: E402

SYNC_OPS = ("aten::item", "aten::_local_scalar_dense", "cudaStreamSynchronize", "cudaDeviceSynchronize",
            "cudaMemcpyAsync", "aten::nonzero")


def timed_attack(view, x, y, eps: float, attacks, deterministic: bool, device) -> float:
    with deterministic_algorithms(deterministic, device):
        return timed(lambda: run_autoattack(view, x, y, eps=eps, norm="linf", version="standard",
                                            only=attacks, seed=0))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--checkpoint", default=str(ROOT / "results/fashion-mnist/checkpoints/node-fashion-mnist-s0/model.pt"))
    parser.add_argument("--images", type=int, default=250)
    parser.add_argument("--eps", type=float, default=0.05)
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    ctx = load_context(args.checkpoint, args.images, args.images, device)
    view = GradientView(ctx.model, GradSolver())
    x, y = ctx.x, ctx.y
    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    print(f"{args.checkpoint} on {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else 'CPU'}), "
          f"{len(x)} images, L∞ eps {args.eps}", flush=True)

    rows = []
    for attack in VERSION_ATTACKS["standard"]:
        times = {det: timed_attack(view, x, y, args.eps, [attack], det, device) for det in (True, False)}
        rows.append([attack, f"{times[True]:.1f}", f"{times[False]:.1f}"])
        print(f"{attack}: {times[True]:.1f} s deterministic, {times[False]:.1f} s not", flush=True)
    print("\n".join(["", *table(["sub-attack (alone, on every image)", "s, deterministic kernels",
                                 "s, default kernels"], rows), ""]))

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with deterministic_algorithms(True, device), profile(activities=activities) as prof:
        run_autoattack(view, x, y, eps=args.eps, norm="linf", version="standard", only=["apgd-ce"], seed=0)
        sync()
    averages = prof.key_averages()
    print("APGD-CE under the profiler, top operators by self CPU time:")
    print(averages.table(sort_by="self_cpu_time_total", row_limit=15))
    counts = {e.key: e.count for e in averages if e.key in SYNC_OPS}
    print("host-device synchronisation points:", counts or "none recorded")
    return 0


if __name__ == "__main__":
    sys.exit(main())
