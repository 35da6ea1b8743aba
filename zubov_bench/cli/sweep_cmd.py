"""`zubov-bench sweep`: a config grid (a study file with variants) into one results store."""
from __future__ import annotations

from pathlib import Path

import click

from ..errors import UserError
from .options import DATA_ROOT, DEVICE, DOWNLOAD, PROGRESS, RECHECK


@click.command("sweep")
@click.argument("study", metavar="STUDY.yaml")
@click.option("--out", type=click.Path(file_okay=False), help="Output folder (default results/STUDY).")
@click.option("--only", metavar="A,B", help="Only these variants (labels as in the study file).")
@click.option("--threads", type=int, metavar="N", help="torch CPU threads (default: the study's).")
@click.option("--jobs", "-j", type=int, metavar="N",
              help="Worker processes for training runs and checkpoint evaluations (default: the study's).")
@RECHECK
@DEVICE
@DATA_ROOT
@DOWNLOAD
@PROGRESS
def command(study, out, only, threads, jobs, recheck, device, data_root, download, progress):
    """Train every variant of STUDY.yaml, attack all of them with one protocol, write tables and figures.

    A study file is a reproduce preset whose `variants` map labels to a model and its overrides,
    e.g. `zubov-no-consistency: {model: zubov, model_config: {lambda_con: 0}}`; a `grid` of
    values expands into one variant per point. Run it again to resume or after adding variants:
    only what is new is trained and attacked. See docs/sweep.md.
    """
    from ..reproduce import load_preset, reproduce

    if Path(study).suffix not in (".yaml", ".yml"):
        raise UserError(f"a sweep needs a study file (.yaml), got {study!r}")
    preset = load_preset(study)
    if not preset.variants:
        raise UserError(f"{study} has no variants; a study without them is a preset: "
                        f"zubov-bench reproduce --preset {study}")
    result = reproduce(study, out, models=only, device=device, data_root=data_root, download=download,
                       progress=progress, threads=threads, jobs=jobs, recheck=recheck, log=lambda message: click.echo(message, err=True))
    click.echo(f"{result.out}: {len(preset.variants)} variants, {len(result.tables)} tables, "
               f"{len(result.figures)} figure files, README {result.readme} ({result.wall_seconds:.0f} s)")
