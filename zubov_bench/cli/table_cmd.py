"""`zubov-bench table`: paper tables from the results store (never re-runs anything)."""
from __future__ import annotations

import click


@click.command("table")
@click.option("--results", "results_dir", default="results/eval", show_default=True,
              type=click.Path(file_okay=False), help="Results folder (holds records.jsonl).")
@click.option("--format", "fmt", type=click.Choice(["md", "latex", "csv"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the table here instead of stdout.")
@click.option("--worst-case", is_flag=True,
              help="Per threat and epsilon: the worst-case robust accuracy beside each individual attack.")
@click.option("--dataset", help="Only this dataset (default: one table per dataset).")
@click.option("--grad-solver", "grad_solvers", multiple=True, metavar="SOLVER",
              help="Only gradient attacks through this solver (repeatable), e.g. deployed or rk4:20. "
                   "Noise and black-box records stay; worst-case unions are dropped.")
@click.option("--only", "only", multiple=True, metavar="NAME[,NAME]",
              help="Only these perturbations' columns beside clean accuracy (repeatable), e.g. "
                   "--only autoattack,worst-case for a compact table.")
@click.option("--alignment", is_flag=True,
              help="The Lyapunov alignment table instead: per checkpoint of a model with Lyapunov "
                   "functions, stable equilibria, PRoA points reaching e_k, data ending in their PRoA.")
def command(results_dir, fmt, out, worst_case, dataset, grad_solvers, only, alignment):
    """Methods as rows; clean accuracy, then every perturbation at every severity."""
    from ..errors import UserError
    from ..io import write_text
    from ..reports import build_tables, load_records, render

    if alignment:
        from ..reports.alignment import load_alignment, render_alignment

        text = render_alignment(load_alignment(results_dir), fmt, dataset)
        if not text:
            raise UserError(f"no alignment diagnostics in {results_dir} (`eval` stores them for models "
                            "with Lyapunov functions)")
    else:
        names = tuple(n.strip() for item in only for n in item.split(",") if n.strip())
        tables = build_tables(load_records(results_dir), dataset, tuple(grad_solvers), worst_case, names)
        text = render(tables, fmt)
    if out:
        write_text(out, text)
        click.echo(f"wrote {out}")
    else:
        click.echo(text, nl=False)
