"""`zubov-bench list`."""
from __future__ import annotations

import click

WHAT = ("models", "datasets", "perturbations")


@click.command("list")
@click.argument("what", type=click.Choice(WHAT + ("all",)), default="all")
def command(what):
    """List registered models, datasets and perturbations."""
    for kind in WHAT if what == "all" else (what,):
        rows = _rows(kind)
        if rows is None:
            continue
        click.echo(f"{kind}:")
        width = max((len(n) for n, _ in rows), default=0)
        for name, desc in rows:
            click.echo(f"  {name:<{width}}  {desc}")


def _rows(kind):
    if kind == "models":
        from ..models import list_models

        return list_models()
    if kind == "datasets":
        from ..data import DATASET_INFO

        return sorted(DATASET_INFO.items())
    try:
        from ..perturbations import list_perturbations
    except ModuleNotFoundError:
        return None
    return list_perturbations()
