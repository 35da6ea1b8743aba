"""`zubov-bench diff OLD NEW`: does a regenerated results store hold the committed numbers?"""
from __future__ import annotations

import click

from ..errors import UserError
from .options import split_names


def _points(value: str) -> float:
    try:
        points = float(value)
    except ValueError:
        points = float("nan")
    if not 0 <= points <= 100:
        raise click.BadParameter(f"must be a number of accuracy points in [0, 100], got {value!r}")
    return points


@click.command("diff")
@click.argument("old", type=click.Path(file_okay=False))
@click.argument("new", type=click.Path(file_okay=False))
@click.option("--tolerance", default="2", show_default=True, callback=lambda ctx, p, v: _points(v),
              help="Largest accepted difference per accuracy, in points (0 asks for equal numbers).")
@click.option("--allow-missing", is_flag=True,
              help="Do not fail on measurements that only one store has (e.g. a narrower re-run).")
@click.option("--only", multiple=True, metavar="NAME[,NAME]",
              help="Compare only these perturbations (e.g. worst-case: clean and worst-case accuracy, the "
                   "numbers docs/reproduce.md promises across machines); training accuracies always.")
@click.option("--show", type=click.IntRange(min=0), default=20, show_default=True,
              help="How many differences of each kind to list.")
def command(old, new, tolerance, allow_missing, only, show):
    """Compare every measurement of NEW with the same one in OLD (same method, training seed, attack,
    ε, evaluation seed, gradient solver and settings) and every checkpoint's final test accuracy.
    Exits with 1 when an accuracy differs by more than --tolerance points, or a measurement is in
    only one of them.

    Typical use: `zubov-bench reproduce --preset quick --out NEW` in a fresh clone, then
    `zubov-bench diff results/quick NEW`.
    """
    from ..reports import load_records
    from ..reports.regenerate import diff_records, diff_training

    before, after = load_records(old), load_records(new)
    wanted = set(split_names(only))
    unknown = wanted - {r.perturbation for r in before + after}
    if unknown:  # a misspelt name would otherwise leave only the training accuracies compared
        raise UserError(f"--only: no record of {', '.join(sorted(unknown))} in {old} or {new}")
    result = diff_records(before, after, tolerance / 100,
                          skip=lambda r: bool(wanted) and r.perturbation not in wanted)
    diff_training(old, new, tolerance / 100, result)
    if not result.compared:
        raise UserError(f"{old} and {new} have no measurement in common")
    click.echo(f"{result.compared} measurements in common; largest difference {100 * result.largest:.2f} "
               f"points (tolerance {tolerance:g})")
    for title, lines in ((f"beyond {tolerance:g} points", result.beyond), (f"only in {old}", result.only_old),
                         (f"only in {new}", result.only_new)):
        if lines:
            click.echo(f"{len(lines)} {title}:")
            for line in lines[:show]:
                click.echo(f"  {line}")
            if len(lines) > show:
                click.echo(f"  ... and {len(lines) - show} more")
    failed = result.beyond or (not allow_missing and (result.only_old or result.only_new))
    if failed:
        raise SystemExit(1)
    click.echo("same numbers within the tolerance")
