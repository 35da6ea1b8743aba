"""`zubov-bench table`: paper tables from the results store (never re-runs anything)."""
from __future__ import annotations

import click


@click.command("table")
@click.option("--results", "results_dir", default="results/eval", show_default=True,
              type=click.Path(file_okay=False), help="Results folder (holds records.jsonl).")
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "csv", "robustbench"]), default="md",
              show_default=True, help="robustbench: one RobustBench model-info JSON per evaluated checkpoint.")
@click.option("--out", type=click.Path(), help="Write the table here instead of stdout (a folder for "
                                               "--format robustbench: DIR/<dataset>/Linf/<model>.json).")
@click.option("--eps", "rb_eps", type=float, default=None,
              help="--format robustbench only: the L-inf eps of autoattack_acc (default: the dataset's "
                   "standard eps, e.g. 0.1 for FashionMNIST).")
@click.option("--worst-case", is_flag=True,
              help="Per threat and epsilon: the worst-case robust accuracy beside each individual attack.")
@click.option("--dataset", help="Only this dataset (default: one table per dataset).")
@click.option("--grad-solver", "grad_solvers", multiple=True, metavar="SOLVER",
              help="Only gradient attacks through this solver (repeatable), e.g. deployed or rk4:20. "
                   "Noise and black-box records stay; worst-case unions are dropped.")
@click.option("--only", "only", multiple=True, metavar="NAME[,NAME]",
              help="Only these perturbations' columns beside clean accuracy (repeatable), e.g. "
                   "--only autoattack,worst-case for a compact table; `paper` names the paper-protocol "
                   "and gap columns.")
@click.option("--alignment", is_flag=True,
              help="The Lyapunov alignment table instead: per checkpoint of a model with Lyapunov "
                   "functions, stable equilibria, PRoA points reaching e_k, data ending in their PRoA.")
@click.option("--group", "group", metavar="NAME",
              help="One column per member of a perturbation group (mean over its severities), e.g. "
                   "--group corruptions; the main table shows only the group's mean.")
def command(results_dir, fmt, out, worst_case, dataset, grad_solvers, only, alignment, rb_eps, group):
    """Methods as rows; clean accuracy, then every perturbation at every severity."""
    from pathlib import Path

    from ..errors import UserError
    from ..io import write_text
    from .options import split_names
    from ..reports import build_tables, load_records, render

    if rb_eps is not None and fmt != "robustbench":
        raise UserError("--eps is only used with --format robustbench")
    if out and fmt != "robustbench" and Path(out).is_dir():
        raise UserError(f"--out {out} is a folder; give a file name")
    if fmt == "robustbench":
        from ..reports.robustbench import model_infos, render_robustbench, write_robustbench

        infos, missing = model_infos(load_records(results_dir), dataset, rb_eps)
        for note in missing:
            click.echo(f"note: not exported: {note}", err=True)
        if out:
            written = write_robustbench(infos, out)
            click.echo(f"wrote {len(written)} model-info file(s) under {out}")
        else:
            click.echo(render_robustbench(infos), nl=False)
        return
    if alignment:
        from ..reports.alignment import load_alignment, render_alignment

        text = render_alignment(load_alignment(results_dir), fmt, dataset)
        if not text:
            raise UserError(f"no alignment diagnostics in {results_dir} (`eval` stores them for models "
                            "with Lyapunov functions)")
    elif group:
        from ..reports.groups import build_group_tables

        if worst_case or only:
            raise UserError("--group shows one group's table; leave out --worst-case and --only")
        text = render(build_group_tables(load_records(results_dir), group, dataset, tuple(grad_solvers)), fmt)
    else:
        names = split_names(only)
        from ..evaluation import ResultsStore

        tables = build_tables(load_records(results_dir), dataset, tuple(grad_solvers), worst_case, names,
                              outcomes=ResultsStore(results_dir).outcomes)
        text = render(tables, fmt)
    if out:
        write_text(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)
