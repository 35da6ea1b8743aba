"""From records to cells: one value per checkpoint, then mean ± std over checkpoints (train seeds).

Within one checkpoint and one (perturbation, threat, severity), the value is the minimum robust
accuracy over gradient solvers and attack settings (the attack that did best), averaged over
evaluation seeds.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

from ..records import Record

WORST_CASE = "worst-case"
CLEAN = ("clean", "", 0.0)
NO_SOLVER = ("none", "all")  # noise / black-box, and worst-case unions: never filtered out
THREAT_ORDER = {"noise": 0, "linf": 1, "l2": 2}


def column_key(record: Record) -> tuple:
    return (record.perturbation, record.threat, round(float(record.severity), 8))


@dataclass
class Cell:
    values: dict = field(default_factory=dict)  # checkpoint sha256 -> value in [0, 1]
    failed: set = field(default_factory=set)  # names of sanity checks that failed
    n: set = field(default_factory=set)  # evaluated subset sizes
    best: bool = False

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values.values())

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values.values()) if len(self.values) > 1 else None


def filter_records(records: list[Record], dataset: str | None = None,
                   grad_solvers: tuple[str, ...] = ()) -> list[Record]:
    """Keep one dataset and, if given, gradient solvers; noise and black-box records always stay.

    Worst-case unions mix every solver, so a solver filter drops them.
    """
    out = [r for r in records if dataset is None or r.dataset == dataset]
    if grad_solvers:
        out = [r for r in out if r.grad_solver in grad_solvers
               or (r.grad_solver == "none" and r.perturbation != WORST_CASE)]
    return out


def _checkpoint_value(records: list[Record]) -> float:
    by_seed = defaultdict(list)
    for r in records:
        by_seed[r.seed].append(r.robust_acc)
    return statistics.fmean(min(v) for v in by_seed.values())


def _clean_value(records: list[Record]) -> float:
    largest = max(r.n for r in records)
    return statistics.fmean(r.clean_acc for r in records if r.n == largest)


def summarize(records: list[Record]) -> dict[tuple, Cell]:
    """(method, column key) -> Cell, plus (method, CLEAN) -> the clean-accuracy cell."""
    groups = defaultdict(list)
    for r in records:
        groups[(r.method, column_key(r), r.checkpoint_sha256)].append(r)
        groups[(r.method, CLEAN, r.checkpoint_sha256)].append(r)
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for (method, key, sha), recs in groups.items():
        cell = cells[(method, key)]
        cell.values[sha] = _clean_value(recs) if key == CLEAN else _checkpoint_value(recs)
        cell.n.update([max(r.n for r in recs)] if key == CLEAN else [r.n for r in recs])  # clean: see _clean_value
        if key != CLEAN:
            cell.failed.update(name for r in recs for name, v in r.sanity.items() if not v.get("ok", True))
    return dict(cells)


def ordered(items) -> list:
    """Unique items in first-appearance order."""
    return list(dict.fromkeys(items))


def column_order(records: list[Record]) -> list[tuple]:
    """Column keys: noise first, then L-inf attacks, then L2; worst case last in its threat."""
    keys = ordered(column_key(r) for r in records)
    first = {k[:2]: i for i, k in reversed(list(enumerate(keys)))}
    return sorted(keys, key=lambda k: (THREAT_ORDER.get(k[1], 3), k[0] == WORST_CASE, first[k[:2]], k[2]))


def mark_best(cells: dict[tuple, Cell], methods: list[str], keys: list[tuple]) -> None:
    """Flag the highest mean in each column (ties all flagged), when two or more methods compete.
    A cell whose sanity check failed is never the best: its number may be gradient masking."""
    for key in keys:
        present = [cells[(m, key)] for m in methods if (m, key) in cells]
        if len(present) < 2:
            continue
        present = [c for c in present if not c.failed]
        if not present:
            continue
        top = max(c.mean for c in present)
        for c in present:
            c.best = c.mean >= top - 1e-12
