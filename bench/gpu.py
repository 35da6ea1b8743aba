"""GPU figures: images per second on FashionMNIST for every model, and AutoAttack time per 1,000
images for the committed FashionMNIST checkpoints. Meant for `--device cuda`; on a CPU they take
hours (AutoAttack) and are left out of the default run."""
from __future__ import annotations

import tempfile

import torch

from common import ROOT, Report, median_seconds, ms, table, timed
from train_step import TARGET, batch_of, make_step
from zubov_bench.evaluation import evaluate
from zubov_bench.models import create_model, list_models
from zubov_bench.records import Record
from zubov_bench.reports import load_records
from zubov_bench.training import resolve_run_config

FASHION = ROOT / "results" / "fashion-mnist"
NODE_IMAGES_PER_S = 20_000  # issue 21's GPU targets: training throughput of node ...
AUTOATTACK_SECONDS = 120  # ... and AutoAttack standard on 1,000 FashionMNIST images for node
AUTOATTACK_EPS = 0.05  # the preset's trade-off ε: at 0.1 every undefended model is near 0 and stops early


def _preset_model(name: str, spec, device):
    """The model with its fashion-mnist preset, and the preset's batch size on this device (on
    CUDA the scaled-up one `train` uses there, presets.CUDA_BATCH_SCALE)."""
    resolved = resolve_run_config(name, "fashion-mnist", None, {}, {}, str(device))
    torch.manual_seed(0)
    return create_model(name, spec, **resolved["model_config"]).to(device), resolved["train"]["batch_size"]


def _input_gradient(model, x, y):
    def step():
        xr = x.clone().requires_grad_(True)
        loss = torch.nn.functional.cross_entropy(model(xr), y)
        torch.autograd.grad(loss, xr)
    return step


def throughput(report: Report, device, quick: bool = False, models=None) -> None:
    """Training, inference and attack-step images/s for each model (or `models`) with its
    fashion-mnist preset."""
    repeats = 5 if quick else 15
    spec, x, y, source = batch_of("fashion-mnist", 1000, device)
    rows, steps = [], {}
    for name in models or [name for name, _ in list_models()]:
        model, batch = _preset_model(name, spec, device)
        train = median_seconds({"train": make_step(model.train(), x[:batch], y[:batch])}, repeats, warmup=2)["train"]
        model.eval()
        with torch.no_grad():
            infer = median_seconds({"infer": lambda: model(x)}, repeats, warmup=1)["infer"]
        attack = median_seconds({"grad": _input_gradient(model, x[:250], y[:250])}, repeats, warmup=1)["grad"]
        steps[name] = train
        rows.append([name, batch, ms(train), f"{batch / train:,.0f}", f"{len(x) / infer:,.0f}",
                     f"{250 / attack:,.0f}"])
    lines = [f"fashion-mnist ({source} data); each model with its fashion-mnist preset config. Training: "
             f"one optimizer step at the preset's batch size on {device.type}; inference: a no-grad forward of "
             f"{len(x):,} test "
             "images with the deployed solver; attack step: forward plus input gradient on 250 images "
             f"(one PGD step of the eval batch). Median of {repeats}.", ""]
    lines += table(["model", "train batch", "train ms/step", "train images/s", "inference images/s",
                    "attack-step images/s"], rows)
    if "zubov" in steps and "node" in steps:
        ratio = steps["zubov"] / steps["node"]
        lines.append(f"\nZubov-Net (fashion-mnist preset) / node, training step: "
                     + report.ratio(f"train step, fashion-mnist on {device.type}, zubov preset / node", ratio, TARGET))
    if "node" in steps:  # issue 21: node trains at >= 20,000 FashionMNIST images/s on a GPU
        node_batch = next(row[1] for row in rows if row[0] == "node")
        lines.append(f"\n{NODE_IMAGES_PER_S:,} / node training images/s: "
                     + report.ratio(f"{NODE_IMAGES_PER_S:,} / node train images/s, fashion-mnist on {device.type}",
                                    NODE_IMAGES_PER_S / (node_batch / steps["node"]), 1.0))
    report.section("Images per second (FashionMNIST)", lines)


def _cpu_record(sha: str) -> Record | None:
    """The committed full-protocol AutoAttack record of the same checkpoint, for comparison."""
    return next((r for r in load_records(FASHION) if r.checkpoint_sha256 == sha and r.perturbation == "autoattack"
                 and r.grad_solver == "deployed" and r.threat == "linf"
                 and abs(r.severity - AUTOATTACK_EPS) < 1e-9), None)


def autoattack(report: Report, device, quick: bool = False, models=("node", "zubov")) -> None:
    """AutoAttack standard at L∞ 0.05 on 1,000 test images, timed through the suite's own `evaluate`."""
    n = 250 if quick else 1000
    batch = n if device.type == "cuda" else 250  # a GPU takes the whole set in one batch
    rows = []
    for name in models:
        path = FASHION / "checkpoints" / f"{name}-fashion-mnist-s0" / "model.pt"
        with tempfile.TemporaryDirectory() as out:
            records = []
            seconds = timed(lambda: records.extend(evaluate(
                [str(path)], attacks=["autoattack"], eps=str(AUTOATTACK_EPS), n_samples=n, batch_size=batch,
                seed=0, device=str(device), grad_solver="deployed", out=out, progress=False,
                log=lambda _m: None)))
        rec = next(r for r in records if r.perturbation == "autoattack")
        cpu = _cpu_record(rec.checkpoint_sha256) if n == 1000 else None
        if name == "node" and n == 1000:
            report.ratio(f"AutoAttack on 1,000 fashion-mnist images, node on {device.type} / {AUTOATTACK_SECONDS} s",
                         rec.wall_time * 1000 / rec.n / AUTOATTACK_SECONDS, 1.0)
        rows.append([name, rec.n, f"{seconds:.1f}", f"{rec.wall_time * 1000 / rec.n:.1f}", f"{rec.clean_acc:.1%}",
                     f"{rec.robust_acc:.1%}", "" if cpu is None else f"{cpu.robust_acc:.1%}",
                     "" if cpu is None else f"{cpu.wall_time * 1000 / cpu.n:.0f}"])
    lines = [f"AutoAttack (pyautoattack, version standard) at L∞ ε = {AUTOATTACK_EPS} on the committed "
             f"results/fashion-mnist checkpoints, batch {batch}, deployed gradient view, timed around the "
             "suite's `evaluate` (clean pass and threat-model checks included); the attack time is the "
             "record's own wall time. The CPU record is the one behind results/fashion-mnist (one core of "
             "the 2-core development machine, shared with a second worker).", ""]
    lines += table(["model", "images", "evaluate s", "attack s per 1,000 images", "clean", "robust",
                    "committed CPU record: robust", "CPU record: attack s per 1,000"], rows)
    report.section("AutoAttack time per 1,000 images", lines)
