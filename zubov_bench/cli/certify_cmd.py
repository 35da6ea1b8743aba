"""`zubov-bench certify`."""
from __future__ import annotations

import click

from .options import DATA_ROOT, DEVICE, DOWNLOAD, PROGRESS, THREADS, apply_threads, option_value


@click.command("certify")
@click.option("--checkpoint", "-c", "checkpoints", multiple=True, metavar="PATH",
              help="Checkpoint to certify (repeatable; a quoted glob works too).")
@click.option("--method", default="smoothing", show_default=True, metavar="NAME",
              help="smoothing (randomized smoothing, any model) or lyapunov (deterministic: Zubov-Net, stable).")
@click.option("--sigma", metavar="S", help="Smoothing noise level, raw pixel units.  [default: 0.25]")
@click.option("--n0", metavar="N", help="Noisy draws that select the class.  [default: 100]")
@click.option("--n", "n_draws", metavar="N", help="Noisy draws that bound its probability.  [default: 1000]")
@click.option("--alpha", metavar="A", help="Failure probability of each certificate.  [default: 0.001]")
@click.option("--radii", metavar="R,R,...",
              help="L2 radii of the certified-accuracy columns (default: 0,0.25,0.5,1 for grey images).")
@click.option("--n-samples", metavar="N", help="Test samples: the same subset as `eval`.  [default: 500]")
@click.option("--batch-size", metavar="B", help="Noisy inputs per forward pass.  [default: 1000]")
@click.option("--seed", metavar="S", help="Seed of the noise (lyapunov: of the flow check).  [default: 0]")
@click.option("--flow-samples", metavar="N",
              help="lyapunov: random feature-ball points whose flow is checked per example.  [default: 8]")
@click.option("--flow-steps", metavar="N",
              help="lyapunov: feature-space PGD steps of the flow check per example.  [default: 10]")
@click.option("--out", default="results/eval", show_default=True, metavar="DIR",
              help="Results folder, shared with `eval` (records.jsonl, records.csv, outcomes/).")
@click.option("--force", is_flag=True, help="Recompute certificates that already exist.")
@DEVICE
@THREADS
@DATA_ROOT
@DOWNLOAD
@PROGRESS
def command(checkpoints, method, sigma, n0, n_draws, alpha, radii, n_samples, batch_size, seed, flow_samples,
            flow_steps, out, force, device, threads, data_root, download, progress):
    """Certified L2 robustness (randomized smoothing, or Zubov-Net's Lyapunov certificate) into the
    results store, beside `eval`'s records."""
    from ..evaluation import ResultsStore
    from ..evaluation.certify import (DEFAULT_BATCH_SIZE, DEFAULT_N_SAMPLES, certify_checkpoints,
                                      median_certified_radius)

    apply_threads(threads)

    records = certify_checkpoints(
        list(checkpoints), method=method, sigma=option_value(sigma, "--sigma", 0.25, float),
        n0=option_value(n0, "--n0", 100),
        n=option_value(n_draws, "--n", 1000), alpha=option_value(alpha, "--alpha", 0.001, float), radii=radii,
        n_samples=option_value(n_samples, "--n-samples", DEFAULT_N_SAMPLES),
        batch_size=option_value(batch_size, "--batch-size", DEFAULT_BATCH_SIZE),
        seed=option_value(seed, "--seed", 0), flow_samples=option_value(flow_samples, "--flow-samples", 8),
        flow_steps=option_value(flow_steps, "--flow-steps", 10),
        device=device, out=out, force=force, data_root=data_root, download=download, progress=progress,
        log=lambda message: click.echo(message, err=True))
    for r in records:
        click.echo(f"{r.method:<12} {r.dataset:<14} {r.perturbation}  radius {r.severity:<5g} "
                   f"certified {r.robust_acc:6.1%}  (clean {r.clean_acc:.1%}, n = {r.n})")
    shown = set()
    for r in records:  # one median per certificate: every radius's record holds the same per-example radii
        if (r.checkpoint, r.perturbation) not in shown:
            shown.add((r.checkpoint, r.perturbation))
            median = median_certified_radius(ResultsStore(out).outcomes(r.id))
            click.echo(f"{r.method:<12} {r.perturbation}: median certified radius {median:.4g} "
                       "(wrong or abstained: 0)")
    click.echo(f"\nrecords: {out}/records.jsonl (+ records.csv, outcomes/)")
