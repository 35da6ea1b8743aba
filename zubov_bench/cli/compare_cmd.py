"""`zubov-bench compare`: is method A better than method B on the same test examples? (paired test)"""
from __future__ import annotations

import click


@click.command("compare")
@click.argument("method_a")
@click.argument("method_b")
@click.option("--results", "results_dir", default="results/eval", show_default=True,
              type=click.Path(file_okay=False), help="Results folder (records.jsonl and outcomes/).")
@click.option("--perturbation", default="clean", show_default=True,
              help="A perturbation name as in the table (pgd, autoattack, worst-case, gaussian, ...) or clean.")
@click.option("--threat", type=click.Choice(["linf", "l2", "noise"]), help="Only records of this threat.")
@click.option("--eps", "severity", type=float, help="Only records at this ε (or σ, severity), raw pixel units.")
@click.option("--dataset", help="Only this dataset (needed when the folder holds several).")
@click.option("--grad-solver", help="Only gradient attacks through this solver, e.g. deployed or rk4:20 "
                                    "(default: an example counts as robust only if it survived all of them).")
@click.option("--confidence", type=float, default=0.95, show_default=True, help="Confidence level of the interval.")
@click.option("--n-boot", type=click.IntRange(min=100), default=10_000, show_default=True,
              help="Bootstrap resamples.")
@click.option("--format", "fmt", type=click.Choice(["md", "csv"]), default="md", show_default=True)
@click.option("--out", type=click.Path(dir_okay=False), help="Write the table here instead of stdout.")
def command(method_a, method_b, results_dir, perturbation, threat, severity, dataset, grad_solver,
            confidence, n_boot, fmt, out):
    """Paired difference METHOD_A − METHOD_B in accuracy, per example and training seed.

    Pairs the two methods' per-example outcomes by (training seed, test example), pools the seeds,
    and gives a bootstrap confidence interval (over test examples) and an exact McNemar test.
    """
    from ..evaluation import ResultsStore
    from ..io import write_text
    from ..reports import load_records
    from ..reports.compare import compare, render_comparison

    records = load_records(results_dir)
    result = compare(records, ResultsStore(results_dir).outcomes, method_a, method_b, perturbation,
                     threat=threat, severity=severity, dataset=dataset, grad_solver=grad_solver,
                     confidence=confidence, n_boot=n_boot)
    text = render_comparison(result, fmt)
    if out:
        write_text(out, text)
        click.echo(f"wrote {out}")
        click.echo(result.verdict)
    else:
        click.echo(text, nl=False)
