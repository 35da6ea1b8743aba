"""`zubov-bench eval`."""
from __future__ import annotations

import click

from ..errors import UserError
from .options import (CUDA_GRAPHS, DATA_ROOT, DEVICE, DOWNLOAD, PROGRESS, THREADS, apply_cuda_graphs,
                      apply_threads, option_value)


@click.command("eval")
@click.option("--checkpoint", "-c", "checkpoints", multiple=True, metavar="PATH",
              help="Checkpoint to evaluate (repeatable; a quoted glob works too).")
@click.option("--attack", "-a", "attacks", multiple=True, metavar="NAME[:k=v,...]",
              help="Perturbation (repeatable), a group (`corruptions`: the 15 MNIST-C corruptions) or `all` "
                   "(default: every perturbation outside a group); parameters as pgd:steps=100,loss=dlr.")
@click.option("--eps", help="Severities for the chosen attacks, e.g. 0.1,0.2,0.3 (default: the dataset grid; "
                            "noises keep their own grid unless named explicitly).")
@click.option("--n-samples", metavar="N", help="Test samples: the first N of a fixed permutation.  [default: 500]")
@click.option("--batch-size", metavar="B", help="Samples per batch.  [default: 250]")
@click.option("--seed", metavar="S", help="Evaluation seed (noise and random starts).  [default: 0]")
@click.option("--grad-solver", metavar="SPEC",
              help="Gradient views for gradient attacks: deployed, rk4:STEPS, bpda:STEPS (comma-separated). "
                   "Default for ODE models: deployed + an RK4 unroll agreeing on >= 99% of clean predictions.")
@click.option("--out", default="results/eval", show_default=True, metavar="DIR",
              help="Results folder (records.jsonl, records.csv, outcomes/).")
@click.option("--force", is_flag=True, help="Recompute records that already exist.")
@click.option("--shard", metavar="i/N", help="Evaluate only batch slice i of N (0 <= i < N); shards merge exactly.")
@click.option("--jobs", "-j", metavar="N",
              help="Worker processes, each evaluating shard i/N with its share of the threads; the "
                   "records are those of one process.  [default: 1]")
@click.option("--recheck", is_flag=True,
              help="Attack nothing: recompute the worst cases and sanity checks of the records --out already "
                   "holds for these checkpoints (after the checks changed). --n-samples and --batch-size "
                   "default to the records'; give the evaluation's --seed and --grad-solver.")
@click.option("--transfer-from", metavar="PATH",
              help="Source checkpoint for attacks that replay examples crafted on another model (transfer).")
@DEVICE
@THREADS
@CUDA_GRAPHS
@DATA_ROOT
@DOWNLOAD
@PROGRESS
def command(checkpoints, attacks, eps, n_samples, batch_size, seed, grad_solver, out, force, shard, jobs,
            recheck, transfer_from, device, threads, cuda_graphs, data_root, download, progress):
    """Attack checkpoints with every registered perturbation; store records, outcomes and sanity checks."""
    from ..evaluation import evaluate
    from ..evaluation import recheck as recheck_records
    from ..evaluation.runner import DEFAULT_BATCH_SIZE
    from ..evaluation.summary import format_summary

    apply_threads(threads)  # --jobs workers share these threads
    apply_cuda_graphs(cuda_graphs, device)
    sizes = dict(n_samples=option_value(n_samples, "--n-samples", None if recheck else 500),  # None: the records'
                 batch_size=option_value(batch_size, "--batch-size", None if recheck else DEFAULT_BATCH_SIZE),
                 seed=option_value(seed, "--seed", 0), device=device, grad_solver=grad_solver, out=out,
                 data_root=data_root, download=download, log=lambda message: click.echo(message, err=True))
    if recheck:
        attacking = [name for name, value in (("--attack", attacks), ("--eps", eps), ("--force", force),
                                              ("--shard", shard), ("--jobs", jobs),
                                              ("--transfer-from", transfer_from)) if value]
        if attacking:
            raise UserError(f"--recheck attacks nothing; drop {', '.join(attacking)}")
        records = recheck_records(list(checkpoints), **sizes)
    else:
        records = evaluate(list(checkpoints), attacks=list(attacks) or "all", eps=eps, force=force, shard=shard,
                           transfer_from=transfer_from, progress=progress,
                           jobs=option_value(jobs, "--jobs", 1), **sizes)
    click.echo(format_summary(records))
    click.echo(f"\nrecords: {out}/records.jsonl (+ records.csv, outcomes/)")
    from pathlib import Path

    from ..evaluation.alignment import ALIGNMENT_FILE

    if (Path(out) / ALIGNMENT_FILE).is_file():
        click.echo(f"Lyapunov alignment: {out}/{ALIGNMENT_FILE} (zubov-bench table --results {out} --alignment)")
