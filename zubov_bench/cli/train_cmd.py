"""`zubov-bench train`."""
from __future__ import annotations

import click

from ..errors import UserError
from .options import (CUDA_GRAPHS, DATA_ROOT, DEVICE, DOWNLOAD, PROGRESS, THREADS, apply_cuda_graphs,
                      apply_threads, parse_set_options)


@click.command("train")
@click.option("--model", "-m", help="Model name (see `zubov-bench list models`).")
@click.option("--dataset", "-d", help="Dataset name (default: digits).")
@click.option("--epochs", type=int, help="Training epochs (default: the dataset preset).")
@click.option("--batch-size", type=int)
@click.option("--lr", type=float, help="Adam learning rate.")
@click.option("--seed", type=int)
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="YAML or TOML file with model, dataset, train: {...} and model_config: {...}.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override one model config value (repeatable), e.g. --set lambda_con=0; a dotted key "
                   "addresses a nested config, e.g. --set lyapunov.form=bregman.")
@click.option("--label", help="Method name in tables (default: the model name), e.g. for an ablation.")
@click.option("--out", type=click.Path(file_okay=False), help="Run folder (default checkpoints/MODEL-DATASET-sSEED).")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False),
              help="Continue the run in this folder from its last checkpoint.")
@click.option("--force", is_flag=True, help="Overwrite an existing run folder.")
@click.option("--save-every-steps", type=int, help="Also checkpoint every N optimizer steps.")
@click.option("--adv-eps", type=float, metavar="EPS",
              help="PGD adversarial training at this L∞ radius (default 0: off), with any model's loss.")
@click.option("--adv-steps", type=int, metavar="N", help="PGD steps per batch for --adv-eps (default 7).")
@click.option("--adv-fraction", type=float, metavar="F",
              help="Share of each batch replaced by PGD examples for --adv-eps (default 1; 0.5: half clean).")
@click.option("--compile/--no-compile", "compile_field", default=None,
              help="torch.compile the model's vector field (default: off).")
@click.option("--log", "log", type=click.Choice(["csv", "tensorboard"]), default=None,
              help="csv (default): metrics.csv; tensorboard: also TensorBoard event files in RUN/tensorboard "
                   "(needs pip install 'zubov-bench[tensorboard]').")
@DEVICE
@THREADS
@CUDA_GRAPHS
@DATA_ROOT
@DOWNLOAD
@PROGRESS
def command(model, dataset, epochs, batch_size, lr, seed, config_file, sets, label, out, resume_dir, force,
            save_every_steps, adv_eps, adv_steps, adv_fraction, compile_field, log, device, threads, cuda_graphs,
            data_root, download, progress):
    """Train a model; writes checkpoint, resolved config, metrics CSV and environment to a run folder.

    Under `torchrun --nproc_per_node=N -m zubov_bench train ...` it trains with N data-parallel
    processes; --batch-size stays the global batch (each process takes batch_size // N).
    """
    from ..training import resolve_run_config, resume_run, train_run
    from ..training.distributed import is_main
    from ..training.run import default_run_dir, settings_a_run_config_leaves_open

    apply_threads(threads)  # recorded in the run's env.json
    apply_cuda_graphs(cuda_graphs, device)

    overrides = {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                 "save_every_steps": save_every_steps, "compile": compile_field, "adv_eps": adv_eps,
                 "adv_steps": adv_steps, "adv_fraction": adv_fraction, "log": log}
    if resume_dir:
        run_options = {"--config": config_file, "--set": sets, "--label": label, "--out": out, "--force": force}
        given = [name for name, value in run_options.items() if value]
        given += [f"--{key.replace('_', '-')}" for key, value in overrides.items() if value is not None]
        if given:
            raise UserError(f"{', '.join(given)} cannot be combined with --resume: a resumed run keeps "
                            f"the config stored in {resume_dir}")
        summary = resume_run(resume_dir, expect={"model": model, "dataset": dataset}, data_root=data_root,
                             download=download, device=device, progress=progress)
        run_dir = resume_dir
    else:
        resolved = resolve_run_config(model, dataset, config_file, overrides, parse_set_options(sets), device)
        open_settings = settings_a_run_config_leaves_open(config_file, resolved) if config_file else {}
        if open_settings:
            click.echo(f"note: {config_file} is the config of a run from before these settings existed, so "
                       f"they take today's values and this run may differ from that one: "
                       f"{', '.join(f'{k}={v}' for k, v in open_settings.items())} "
                       f"(pin them with --set or in the file)", err=True)
        if label:
            resolved["method"] = label
        run_dir = out or default_run_dir(resolved)
        summary = train_run(resolved, run_dir, data_root=data_root, download=download,
                            device=device, progress=progress, force=force)
    if not is_main():
        return
    click.echo(f"{summary['model']} on {summary['dataset']}: test accuracy {summary['test_acc']:.4f} "
               f"after {summary['epochs']} epochs ({summary['train_seconds']:.0f}s) -> {run_dir}")
