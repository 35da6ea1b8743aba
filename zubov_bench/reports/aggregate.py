"""From records to cells: one value per checkpoint, then mean ± std over checkpoints (train seeds).

Within one checkpoint and one (perturbation, threat, severity), the value is the minimum robust
accuracy over gradient solvers and attack settings (the attack that did best), averaged over
evaluation seeds.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field

import pandas as pd

from ..records import Record, is_attack_flag

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
    flags: set = field(default_factory=set)  # warnings an attack's library raised (AutoAttack's checks)
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


def _frame(records: list[Record]) -> pd.DataFrame:
    """One row per record and table column it feeds: its own column and the clean column."""
    rows = [{"method": r.method, "key": key, "sha": r.checkpoint_sha256, "seed": r.seed, "n": r.n,
             "clean": r.clean_acc, "robust": r.robust_acc, "record": i}
            for i, r in enumerate(records) for key in (column_key(r), CLEAN)]
    return pd.DataFrame(rows)


def _checkpoint_values(frame: pd.DataFrame) -> pd.Series:
    """(method, key, sha) -> value: attack columns take the best attack (the minimum robust accuracy)
    per evaluation seed, averaged over seeds; the clean column averages the records of the largest n."""
    attacked = frame[frame["key"] != CLEAN]
    robust = attacked.groupby(["method", "key", "sha", "seed"], sort=False)["robust"].min() \
        .groupby(level=["method", "key", "sha"], sort=False).mean()
    clean = frame[frame["key"] == CLEAN]
    largest = clean.groupby(["method", "sha"], sort=False)["n"].transform("max")
    clean = clean[clean["n"] == largest].groupby(["method", "key", "sha"], sort=False)["clean"].mean()
    return pd.concat([robust, clean])


def summarize(records: list[Record]) -> dict[tuple, Cell]:
    """(method, column key) -> Cell, plus (method, CLEAN) -> the clean-accuracy cell.

    A cell holds one value per checkpoint (training seed); mean ± std is over those."""
    cells: dict[tuple, Cell] = defaultdict(Cell)
    if not records:
        return {}
    frame = _frame(records)
    for method, key in ordered(zip(frame["method"], frame["key"])):  # cells in first-appearance order
        cells[(method, key)] = Cell()
    for (method, key, sha), value in _checkpoint_values(frame).items():
        cells[(method, key)].values[sha] = float(value)
    for (method, key, sha), group in frame.groupby(["method", "key", "sha"], sort=False):
        cell = cells[(method, key)]
        cell.n.update([int(group["n"].max())] if key == CLEAN else group["n"].astype(int).tolist())
        if key != CLEAN:
            raised = [name for i in group["record"] for name, v in records[i].sanity.items()
                      if not v.get("ok", True)]
            cell.failed.update(name for name in raised if not is_attack_flag(name))
            cell.flags.update(name for name in raised if is_attack_flag(name))
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
