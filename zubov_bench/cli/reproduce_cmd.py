"""`zubov-bench reproduce`."""
from __future__ import annotations

import click

from ..errors import UserError
from .options import DATA_ROOT, DEVICE, DOWNLOAD, PROGRESS, RECHECK


@click.command("reproduce")
@click.option("--preset", "-p", metavar="NAME|FILE.yaml",
              help="quick (digits, about 20 min on an idle 2-core CPU), fashion-mnist (CPU, hours), paper (GPU), a preset "
                   "registered from Python, or a YAML file with the same keys.")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default results/PRESET).")
@click.option("--models", metavar="A,B", help="Only these models (default: the preset's, usually every "
                                              "registered model).")
@click.option("--threads", type=int, metavar="N",
              help="torch CPU threads (default: the preset's; quick uses 1, since its tiny models gain "
                   "little from more and several threaded processes on a shared CPU thrash).")
@click.option("--jobs", "-j", type=int, metavar="N",
              help="Worker processes for training runs and checkpoint evaluations (default: the preset's; "
                   "quick uses 2).")
@click.option("--force", is_flag=True, help="Retrain the selected models (--models, else all of the preset's) "
              "from scratch and recompute their records; the other models' work is kept.")
@RECHECK
@click.option("--list", "list_presets", is_flag=True, help="List the presets and exit.")
@DEVICE
@DATA_ROOT
@DOWNLOAD
@PROGRESS
def command(preset, out, models, threads, jobs, force, recheck, list_presets, device, data_root, download, progress):
    """Train every model, evaluate the perturbation grid, write tables, figures and a README.

    Run it again to resume: finished training runs and records are skipped, interrupted ones
    continue from their last checkpoint or batch. Checkpoints go to OUT/checkpoints/.
    """
    from ..reproduce import PRESETS, reproduce

    if list_presets:
        for name, p in PRESETS.items():
            click.echo(f"{name:<16} {p.description}")
        return
    if not preset:
        raise UserError("no preset given: pass --preset NAME (see `zubov-bench reproduce --list`)")
    result = reproduce(preset, out, models=models, device=device, data_root=data_root, download=download,
                       progress=progress, threads=threads, jobs=jobs, force=force, recheck=recheck, log=lambda message: click.echo(message, err=True))
    click.echo(f"{result.out}: {len(result.tables)} tables, {len(result.figures)} figure files, "
               f"README {result.readme} ({result.wall_seconds:.0f} s)")
