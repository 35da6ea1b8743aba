"""Is method A better than method B? A paired test on the same test examples (issue 18).

Both methods' per-example outcomes (outcomes/<id>.npz: index, clean, robust) are paired by
(training seed, test-example index); seeds are pooled. Per checkpoint and example, an example
counts as robust only if it survived every matching record (every gradient solver, attack setting
and evaluation seed of the chosen perturbation and ε): the strict per-example worst case.

* Confidence interval: a paired bootstrap over test examples (scipy.stats.bootstrap); an example
  carries all its seeds with it, since the seeds share the example and so are not independent.
* Significance: the exact McNemar test, a two-sided binomial test (scipy.stats.binomtest) on the
  discordant pairs (A right and B wrong against A wrong and B right).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from ..errors import UserError
from ..records import Record
from .aggregate import column_key
from .render import _md_escape, _md_row

CLEAN = "clean"
POOLED = "pooled"


@dataclass
class Comparison:
    method_a: str
    method_b: str
    what: str  # "clean" or "pgd linf 0.1"
    table: pd.DataFrame  # one row per training seed, then the pooled row
    verdict: str


def _matching(records: list[Record], method: str, dataset: str | None, perturbation: str,
              threat: str | None, severity: float | None, grad_solver: str | None) -> list[Record]:
    out = [r for r in records if r.method == method and (dataset is None or r.dataset == dataset)]
    if perturbation != CLEAN:
        out = [r for r in out if r.perturbation == perturbation
               and (threat is None or r.threat == threat)
               and (severity is None or abs(r.severity - severity) <= 1e-8 * max(1.0, abs(severity)))
               and (grad_solver is None or r.grad_solver == grad_solver)]
    if not out:
        raise UserError(f"no records of method {method!r} for {_describe(perturbation, threat, severity)}"
                        + (f" through {grad_solver}" if grad_solver and perturbation != CLEAN else "")
                        + (f" on {dataset}" if dataset else ""))
    return out


def _describe(perturbation: str, threat: str | None, severity: float | None) -> str:
    return " ".join(str(p) for p in (perturbation, threat, None if severity is None else f"{severity:g}")
                    if p is not None)


def per_example(records: list[Record], outcomes, column: str) -> pd.DataFrame:
    """Columns train_seed, index, correct: one row per (checkpoint's training seed, example).

    `outcomes(record_id)` returns the record's arrays; `column` is "robust" or "clean". With several
    matching records per seed, an example is correct only if correct in all of them, over the
    examples they all evaluated.
    """
    if len({(r.train_seed, r.checkpoint_sha256) for r in records}) > len({r.train_seed for r in records}):
        raise UserError(f"method {records[0].method!r} has several checkpoints with the same training seed; "
                        "pass --dataset, or keep one checkpoint per seed in the results folder")
    frames = []
    for r in records:
        arrays = outcomes(r.id)
        frames.append(pd.DataFrame({"train_seed": r.train_seed, "index": arrays["index"].astype(np.int64),
                                    "correct": arrays[column].astype(bool)}))
    long = pd.concat(frames, ignore_index=True)
    n_records = pd.Series([r.train_seed for r in records]).value_counts()
    grouped = long.groupby(["train_seed", "index"])["correct"].agg(["all", "size"]).reset_index()
    grouped = grouped[grouped["size"] == grouped["train_seed"].map(n_records)]  # seen by every record
    return grouped.rename(columns={"all": "correct"})[["train_seed", "index", "correct"]]


def _one_per_checkpoint(records: list[Record]) -> list[Record]:
    """Clean accuracy: every record of a checkpoint holds its clean outcomes; take the largest."""
    best: dict[str, Record] = {}
    for r in records:
        if r.checkpoint_sha256 not in best or r.n > best[r.checkpoint_sha256].n:
            best[r.checkpoint_sha256] = r
    return list(best.values())


def _stats(a: np.ndarray, b: np.ndarray, example: np.ndarray, confidence: float, n_boot: int,
           seed: int) -> dict:
    diff = a.astype(float) - b.astype(float)
    a_only, b_only = int((a & ~b).sum()), int((~a & b).sum())
    p = stats.binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    # bootstrap clusters: one per test example, holding its (difference sum, pair count) over seeds
    sums = pd.DataFrame({"example": example, "diff": diff}).groupby("example")["diff"].agg(["sum", "size"])
    if len(sums) > 1 and (a_only or b_only):
        ci = stats.bootstrap((sums["sum"].to_numpy(), sums["size"].to_numpy()),
                             lambda s, c, axis=-1: s.sum(axis) / c.sum(axis), paired=True,
                             vectorized=True, confidence_level=confidence, n_resamples=n_boot,
                             method="percentile", rng=np.random.default_rng(seed)).confidence_interval
        low, high = 100 * ci.low, 100 * ci.high
    else:  # no discordant pair (or one example): every resample gives the same difference
        low = high = 100 * diff.mean()
    return {"acc_a": 100 * a.mean(), "acc_b": 100 * b.mean(), "diff": 100 * diff.mean(),
            "ci_low": low, "ci_high": high, "a_only": a_only, "b_only": b_only, "p_mcnemar": p,
            "n": len(a)}


def compare(records: list[Record], outcomes, method_a: str, method_b: str, perturbation: str = CLEAN, *,
            threat: str | None = None, severity: float | None = None, dataset: str | None = None,
            grad_solver: str | None = None, confidence: float = 0.95, n_boot: int = 10_000,
            seed: int = 0) -> Comparison:
    """Paired comparison of `method_a` against `method_b`; `outcomes(record_id)` reads the arrays."""
    if method_a == method_b:
        raise UserError("compare needs two different methods")
    if not 0 < confidence < 1:
        raise UserError(f"--confidence must be in (0, 1), got {confidence}")
    if dataset is None and len({r.dataset for r in records}) > 1:
        raise UserError(f"the results hold several datasets ({', '.join(sorted({r.dataset for r in records}))}): "
                        "pass --dataset")
    sides, keys = [], []
    for method in (method_a, method_b):
        recs = _matching(records, method, dataset, perturbation, threat, severity, grad_solver)
        if perturbation == CLEAN:
            sides.append(per_example(_one_per_checkpoint(recs), outcomes, "clean"))
            continue
        found = {column_key(r) for r in recs}
        if len(found) > 1:
            raise UserError(f"{method}: several threats or severities match: give --threat and --eps "
                            f"({'; '.join(_describe(*k) for k in sorted(found))})")
        keys += found
        sides.append(per_example(recs, outcomes, "robust"))
    if perturbation != CLEAN and keys[0] != keys[1]:
        raise UserError(f"{method_a} and {method_b} were evaluated at different settings "
                        f"({_describe(*keys[0])} against {_describe(*keys[1])}): give --threat and --eps")
    what = _describe(*keys[0]) if keys else CLEAN
    pairs = sides[0].merge(sides[1], on=["train_seed", "index"], suffixes=("_a", "_b"))
    if pairs.empty:
        raise UserError(f"{method_a} and {method_b} share no (training seed, test example) pair: "
                        "evaluate both on the same test subset and seeds")
    rows = []
    for seed_value, group in pairs.groupby("train_seed"):
        rows.append({"train_seed": str(seed_value), **_stats(group["correct_a"].to_numpy(), group["correct_b"].to_numpy(),
                                                             group["index"].to_numpy(), confidence, n_boot, seed)})
    pooled = _stats(pairs["correct_a"].to_numpy(), pairs["correct_b"].to_numpy(), pairs["index"].to_numpy(),
                    confidence, n_boot, seed)
    rows.append({"train_seed": POOLED, **pooled})
    table = pd.DataFrame(rows)
    n_seeds = pairs["train_seed"].nunique()
    n_examples = pairs.groupby("train_seed").size()
    n_text = (f"{n_examples.iloc[0]} × {n_seeds} seed{'s' if n_seeds > 1 else ''}"
              if n_examples.nunique() == 1 else f"{len(pairs)} pairs over {n_seeds} seeds")
    verdict = (f"{method_a} − {method_b} ({what}) = {pooled['diff']:+.1f} points, "
               f"{100 * confidence:g}% CI [{pooled['ci_low']:.1f}, {pooled['ci_high']:.1f}], "
               f"McNemar p = {_p_text(pooled['p_mcnemar'])}, n = {n_text}")
    return Comparison(method_a, method_b, what, table, verdict)


def _p_text(p: float) -> str:
    return f"{p:.2g}" if p < 0.01 else f"{p:.3f}"


COLUMNS = {"train_seed": "train seed", "acc_a": "{a} (%)", "acc_b": "{b} (%)", "diff": "{a} − {b} (points)",
           "ci_low": "CI low", "ci_high": "CI high", "a_only": "only {a} right", "b_only": "only {b} right",
           "p_mcnemar": "McNemar p", "n": "pairs"}


def render_comparison(result: Comparison, fmt: str) -> str:
    """The table (markdown or csv) and, in markdown, the one-line verdict under it."""
    headers = {k: v.format(a=result.method_a, b=result.method_b) for k, v in COLUMNS.items()}
    table = result.table[list(COLUMNS)].rename(columns=headers)
    if fmt == "csv":
        return table.to_csv(index=False, float_format="%.6g")
    shown = table.copy()
    for column in (headers["acc_a"], headers["acc_b"], headers["ci_low"], headers["ci_high"]):
        shown[column] = shown[column].map("{:.1f}".format)
    shown[headers["diff"]] = shown[headers["diff"]].map("{:+.1f}".format)
    shown[headers["p_mcnemar"]] = shown[headers["p_mcnemar"]].map(_p_text)
    lines = [_md_row(_md_escape(str(c)) for c in shown.columns), _md_row("---" for _ in shown.columns)]
    lines += [_md_row(_md_escape(str(v)) for v in row) for row in shown.itertuples(index=False)]
    return "\n".join(lines) + f"\n\n{result.verdict}\n"
