"""Perturbation groups in tables: one mean column per group (mCA for the corruptions) in the main
table, and a per-member table (`zubov-bench table --group corruptions`).

A group is a class trait (`Perturbation.group`); its members stay out of the main table's
per-severity columns, which would be 75 for the 15 corruptions at 5 severities. A checkpoint's
group mean is the mean of its accuracies over every (member, severity) column of the table, as
MNIST-C and ImageNet-C average over corruptions and severities; a checkpoint that lacks one of
those columns gets no mean (a mean over fewer corruptions is not comparable), and the note says so.
"""
from __future__ import annotations

import statistics

from ..records import Record
from .aggregate import CLEAN, Cell, column_key, ordered

MEAN = "mean"  # the severity field of a mean column's key: (name, threat, "mean")


def group_of(name: str) -> str:
    """The group a registered perturbation belongs to; "" for none (or no longer registered)."""
    from ..perturbations import PERTURBATIONS

    return PERTURBATIONS.get(name).group if name in PERTURBATIONS else ""


def group_title(group: str) -> str:
    return f"{group.capitalize()} (mean)"


def groups_present(records: list[Record]) -> list[str]:
    return [g for g in ordered(group_of(r.perturbation) for r in records) if g]


def mean_cell(cells: dict[tuple, Cell], method: str, keys: list[tuple]) -> Cell | None:
    """Per checkpoint, the mean over `keys`; only checkpoints evaluated on every key count."""
    members = [cells[(method, k)] for k in keys if (method, k) in cells]
    if len(members) < len(keys) or not members:
        return None
    shas = set.intersection(*(set(c.values) for c in members))
    if not shas:
        return None
    out = Cell()
    for sha in sorted(shas, key=list(members[0].values).index):
        out.values[sha] = statistics.fmean(c.values[sha] for c in members)
    for c in members:
        out.failed |= c.failed
        out.flags |= c.flags
        out.n |= c.n
    return out


def _member_keys(records: list[Record], group: str) -> dict[str, list[tuple]]:
    """member name -> its column keys (severities) in the records, in first-appearance order."""
    keys: dict[str, list[tuple]] = {}
    for key in ordered(column_key(r) for r in records if group_of(r.perturbation) == group):
        keys.setdefault(key[0], []).append(key)
    return {name: sorted(ks, key=lambda k: k[2]) for name, ks in keys.items()}


def add_group_means(records: list[Record], cells: dict[tuple, Cell], methods: list[str]) -> list[tuple[str, tuple, str]]:
    """Put each group's mean cells into `cells`; returns (group, column key, note) per group."""
    out = []
    for group in groups_present(records):
        members = _member_keys(records, group)
        keys = [k for ks in members.values() for k in ks]
        threat = keys[0][1]
        mean_key = (group, threat, MEAN)
        for method in methods:
            cell = mean_cell(cells, method, keys)
            if cell is not None:
                cells[(method, mean_key)] = cell
        incomplete = [m for m in methods if (m, mean_key) not in cells
                      or len(cells[(m, mean_key)].values) < len(cells[(m, CLEAN)].values)]
        note = (f"{group_title(group)}: mean accuracy over {len(keys)} columns, {len(members)} {group} at "
                f"their severities (per member: zubov-bench table --group {group})")
        if incomplete:
            note += f"; no mean for {', '.join(incomplete)}: checkpoints without all of these columns"
        out.append((group, mean_key, note + "."))
    return out


def is_group_member(key: tuple) -> bool:
    return bool(group_of(key[0])) and key[2] != MEAN


def build_group_tables(records: list[Record], group: str, dataset: str | None = None,
                       grad_solvers: tuple[str, ...] = ()):
    """Per dataset: methods as rows; clean accuracy, each member of `group` (mean over its
    severities), then the group mean."""
    from ..errors import UserError
    from .aggregate import filter_records, mark_best, summarize
    from .tables import Column, Table, _notes

    records = filter_records(records, dataset, grad_solvers)
    present = groups_present(records)
    if group not in present:
        raise UserError(f"no records of the {group!r} group" + (f" on {dataset}" if dataset else "")
                        + (f"; these results have the groups: {', '.join(present)}" if present
                           else f"; run `zubov-bench eval --attack {group}` first"))
    tables = []
    for ds in ordered(r.dataset for r in records):
        rows = [r for r in records if r.dataset == ds and (not group_of(r.perturbation) or group_of(r.perturbation) == group)]
        if not any(group_of(r.perturbation) == group for r in rows):
            continue
        cells = summarize(rows)
        methods = ordered(r.method for r in rows if group_of(r.perturbation) == group)  # evaluated on it
        members = _member_keys(rows, group)
        columns = [Column("", "Clean", CLEAN)]
        for name, keys in members.items():
            key = (name, keys[0][1], MEAN)
            for method in methods:
                cell = mean_cell(cells, method, keys)
                if cell is not None:
                    cells[(method, key)] = cell
            columns.append(Column("", _member_label(name), key))
        (_, mean_key, note), = [m for m in add_group_means(rows, cells, methods) if m[0] == group]
        columns.append(Column("", group_title(group), mean_key))
        mark_best(cells, methods, [c.key for c in columns])
        table = Table(f"Accuracy (%) under each of the {group}, mean over severities "
                      f"{', '.join(f'{s:g}' for s in _severities(members))}, on {ds}",
                      ds, methods, columns, cells, [])
        table.notes = _notes(table, grad_solvers) + [note]
        tables.append(table)
    return tables


def _member_label(name: str) -> str:
    from .labels import perturbation_name

    return perturbation_name(name)


def _severities(members: dict[str, list[tuple]]) -> list[float]:
    return sorted({k[2] for keys in members.values() for k in keys})
