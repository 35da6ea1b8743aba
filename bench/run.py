"""Run every benchmark and print its ratios: `python bench/run.py [--quick] [--write]`.

Each benchmark measures its reference in the same run on the same machine, interleaving the
contenders, so the ratios hold on a loaded machine where absolute times do not. `--write` puts the
report into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import attacks  # noqa: E402
import compiled_field  # noqa: E402
import contention  # noqa: E402
import gpu  # noqa: E402
import solvers  # noqa: E402
import train_step  # noqa: E402
from common import ROOT, Report, machine, table  # noqa: E402
from zubov_bench.device import resolve_device  # noqa: E402
from zubov_bench.io import write_text  # noqa: E402
from zubov_bench.models.ode import use_cuda_graphs  # noqa: E402
from zubov_bench.training import resolve_run_config, train_run  # noqa: E402

BENCHMARKS = ("train_step", "throughput", "autoattack", "compile", "attacks", "solvers", "contention")  # run order
GPU_ONLY = ("throughput", "autoattack")  # hours on a CPU: run there only when named with --only
CPU_ONLY = ("contention",)  # CPU threads against a competing process
GPU_FIGURES = ("train_step", "throughput", "autoattack")  # --gpu: what issue 21 asks of a GPU
GPU_FIGURE_MODELS = ("node", "zubov")


def trained_checkpoints(folder: Path, epochs: int) -> dict[str, str]:
    """Small digits models for the attack and solver benchmarks: undefended node, Zubov-Net."""
    out = {}
    for model in ("node", "zubov"):
        resolved = resolve_run_config(model, "digits", None, {"epochs": epochs, "seed": 0}, {})
        train_run(resolved, folder / model, progress=False, device="cpu")
        out[model] = str(folder / model / "model.pt")
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and sizes (a smoke run)")
    parser.add_argument("--only", choices=BENCHMARKS, action="append", help="run only these benchmarks")
    parser.add_argument("--device", default="auto",
                        help="auto | cpu | cuda (training step, compile, throughput and AutoAttack)")
    parser.add_argument("--write", action="store_true", help="write the report to bench/RESULTS.md")
    parser.add_argument("--cuda-graphs", action="store_true",
                        help="replay the fixed-step solver as CUDA graphs (zubov-bench --cuda-graphs) on a GPU")
    parser.add_argument("--gpu", action="store_true",
                        help="the GPU figures of issue 21: training step (Zubov-Net / node), images/s of node "
                             "and zubov, AutoAttack standard on 1,000 FashionMNIST images for node")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    default = [b for b in BENCHMARKS if b not in (CPU_ONLY if device.type == "cuda" else GPU_ONLY)]
    chosen = [b for b in BENCHMARKS if b in (args.only or (GPU_FIGURES if args.gpu else default))]
    if args.cuda_graphs:
        if device.type == "cuda":
            use_cuda_graphs(True)
        else:
            print("note: --cuda-graphs does nothing without a CUDA device", flush=True)
    models = {"throughput": GPU_FIGURE_MODELS if args.gpu else None, "autoattack": ("node",) if args.gpu else None}
    tmp, checkpoints = tempfile.TemporaryDirectory(), None  # small digits models for attacks and solvers
    info = machine(device)
    report, start = Report(), time.time()
    print(f"machine: {info}", flush=True)

    def done(name: str) -> None:  # a run stopped later still leaves what it finished in the file
        if args.write:
            write_results(info, report, (time.time() - start) / 60, args, pending=chosen[chosen.index(name) + 1:])

    for name in chosen:
        if name == "train_step":
            train_step.run(report, device, args.quick)
        elif name == "throughput":
            gpu.throughput(report, device, args.quick, models["throughput"])
        elif name == "autoattack":
            gpu.autoattack(report, device, args.quick and not args.gpu, models["autoattack"] or ("node", "zubov"))
        elif name == "contention":
            contention.run(report, device, args.quick)
        elif name == "compile":
            compiled_field.run(report, device, args.quick)
        elif name in ("attacks", "solvers"):
            if checkpoints is None:
                checkpoints = trained_checkpoints(Path(tmp.name), epochs=3 if args.quick else 6)
            (attacks if name == "attacks" else solvers).run(report, checkpoints, args.quick)
        done(name)
    tmp.cleanup()
    minutes = (time.time() - start) / 60
    print("\n".join(["### Summary", "", *report.summary()]), flush=True)
    print(f"\nbench finished in {minutes:.1f} min")
    return 0


RESULTS = ROOT / "bench" / "RESULTS.md"
KINDS = ("cpu", "cuda")  # one block per kind of machine; writing one keeps the other


def write_results(info: dict, report: Report, minutes: float, args, pending: list[str] = ()) -> None:
    kind = "cuda" if info["device_type"] == "cuda" else "cpu"
    command = "python bench/run.py --write" + (" --quick" if args.quick else "") + \
        (f" --device {args.device}" if args.device != "auto" else "") + \
        (" --gpu" if getattr(args, "gpu", False) else "") + \
        (" --cuda-graphs" if getattr(args, "cuda_graphs", False) else "") + \
        "".join(f" --only {o}" for o in args.only or [])
    lines = [f"## {'GPU' if kind == 'cuda' else 'CPU'}: {info['device']}", "",
             f"Produced by `{command}` in {minutes:.1f} min"
             + (f"; still to run when written: {', '.join(pending)}." if pending else "."), ""]
    lines += table(list(info), [list(info.values())])
    lines += ["", "### Summary", "", *report.summary(), "", "### Details", ""]
    lines += [section.replace("### ", "#### ", 1) for section in report.sections]
    text = RESULTS.read_text() if RESULTS.exists() else ""
    blocks = read_blocks(text)
    blocks[kind] = "\n".join(lines).rstrip()
    body = [f"<!-- bench:{k} -->\n{blocks[k]}\n<!-- /bench:{k} -->" for k in KINDS if k in blocks]
    if "cuda" not in blocks:
        body.append(NO_GPU_RUN)
    hand = hand_sections(text)
    write_text(RESULTS, "# Benchmark results\n\n" + "\n\n".join(body + ([hand] if hand else [])) + "\n")  # atomic
    print(f"wrote {RESULTS}")


NO_GPU_RUN = "No GPU run yet: `python bench/run.py --device cuda --write` on a GPU machine adds one."


def hand_sections(text: str) -> str:
    """What follows the generated blocks (sections written by hand, each with its own command):
    kept as it is when a block is rewritten."""
    end = text.rfind("<!-- /bench:")
    if end < 0:
        return ""
    rest = text[text.index("-->", end) + 3:]
    return rest.replace(NO_GPU_RUN, "").strip()


def read_blocks(text: str) -> dict[str, str]:
    blocks = {}
    for kind in KINDS:
        start, end = f"<!-- bench:{kind} -->\n", f"\n<!-- /bench:{kind} -->"
        if start in text and end in text:
            blocks[kind] = text.split(start, 1)[1].split(end, 1)[0]
    return blocks


if __name__ == "__main__":
    sys.exit(main())
