"""Paper tables from records: methods as rows, perturbations x severities as grouped columns."""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from ..errors import UserError
from ..records import Record
from .aggregate import (CLEAN, THREAT_ORDER, WORST_CASE, Cell, column_key, column_order, filter_records,
                        mark_best, ordered, summarize)
from .certified import CERTIFIED_NOTE, certified_column, certified_group, flag_certified_cells, is_certified
from .groups import add_group_means, group_title, groups_present, is_group_member
from .paper import PAPER_NOTE, paper_cells, split_paper_records
from .seed_coverage import EVERY_SEED_NAME, narrow_worst_cases, narrowed_notes, partial_attack_notes
from .labels import THREATS, perturbation_label, severity_label, threat_severity_label, perturbation_name


PAPER_ONLY = "paper"  # the --only name of the paper-protocol and gap columns (as eval's --attack paper)


@dataclass(frozen=True)
class Column:
    group: str  # header spanning consecutive columns; "" for a column of its own
    label: str
    key: tuple  # (perturbation, threat, severity), or CLEAN


@dataclass
class Table:
    title: str
    dataset: str
    methods: list[str]
    columns: list[Column]
    cells: dict[tuple, Cell]
    notes: list[str]

    def cell(self, method: str, column: Column) -> Cell | None:
        return self.cells.get((method, column.key))

    def groups(self) -> list[tuple[str, int]]:
        """Consecutive (group label, span) pairs over the columns."""
        out: list[list] = []
        for col in self.columns:
            if out and col.group and out[-1][0] == col.group:
                out[-1][1] += 1
            else:
                out.append([col.group, 1])
        return [(g, n) for g, n in out]

    def failed_checks(self) -> list[str]:
        return sorted({name for m in self.methods for c in self.columns
                       for name in (self.cell(m, c).failed if self.cell(m, c) else ())})

    def attack_flags(self) -> list[str]:
        return sorted({name for m in self.methods for c in self.columns
                       for name in (self.cell(m, c).flags if self.cell(m, c) else ())})


def build_tables(records: list[Record], dataset: str | None = None, grad_solvers: tuple[str, ...] = (),
                 worst_case: bool = False, only: tuple[str, ...] = (), outcomes=None) -> list[Table]:
    """One table per dataset (or only `dataset`); never re-runs anything. `only` keeps the columns
    of these perturbations (and `worst-case`) beside clean accuracy, e.g. for a compact table.
    `outcomes(record_id)` (the store's per-example arrays), when given, lets a worst case whose
    attacks ran on only some training seeds show its every-seed column (reports/seed_coverage.py)."""
    records = filter_records(records, dataset, grad_solvers)
    if not records:
        raise UserError("no records match" + (f" dataset {dataset!r}" if dataset else "")
                        + (f" and grad solver(s) {', '.join(grad_solvers)}" if grad_solvers else ""))
    present = {r.perturbation for r in records} | set(groups_present(records)) \
        | ({PAPER_ONLY} if split_paper_records(records)[1] else set())
    unknown = sorted(set(only) - present)
    if unknown:
        raise UserError(f"no records of {', '.join(unknown)}; these results have: "
                        f"{', '.join(sorted(present))}")
    return [_build(ds, [r for r in records if r.dataset == ds], grad_solvers, worst_case, only, outcomes)
            for ds in ordered(r.dataset for r in records)]


def _build(dataset: str, records: list[Record], grad_solvers, worst_case: bool, only: tuple[str, ...] = (),
           outcomes=None) -> Table:
    records, paper = split_paper_records(records)  # the paper protocol gets its own columns, never a strict cell
    cells = summarize(records)
    flag_certified_cells(cells, records)
    narrowed = {entry.key: entry for entry in narrow_worst_cases(cells, records, outcomes)}
    methods = ordered(r.method for r in records)
    columns = [Column("", "Clean", CLEAN)] + [c for c in (_worst_case_columns(records) if worst_case
                                                          else _plain_columns(records))
                                              if not only or c.key[0] in only]
    if worst_case and len(columns) == 1:
        raise UserError(f"no L-inf or L2 attack records for {dataset}")
    group_notes = []
    if not worst_case:  # a group (the corruptions) shows as one mean column, right after Clean
        means = [m for m in add_group_means(records, cells, methods) if not only or m[0] in only]
        columns = columns[:1] + [Column("", group_title(g), key) for g, key, _ in means] \
            + [c for c in columns[1:] if not is_group_member(c.key) or c.key[0] in only]
        group_notes = [note for _, _, note in means]
    columns = _with_every_seed_columns(columns, narrowed, cells, worst_case)
    group_notes += narrowed_notes([entry for key, entry in narrowed.items() if any(c.key == key for c in columns)])
    group_notes += partial_attack_notes(cells, records, [c.key for c in columns])
    mark_best(cells, methods, [c.key for c in columns])
    if only and PAPER_ONLY not in only:  # --only shows what it names: the paper columns when it names `paper`
        paper = []
    for label, key, extra in paper_cells(paper, records, dataset):  # after mark_best: a gap is no score
        columns.append(Column("Paper protocol", label, key))
        cells.update(extra)
    if paper:
        group_notes.append(PAPER_NOTE)
    title = (f"Worst-case and per-attack robust accuracy (%) on {dataset}" if worst_case
             else f"Clean and robust accuracy (%) on {dataset}")
    table = Table(title, dataset, methods, columns, cells, [])
    table.notes = _notes(table, grad_solvers) + group_notes
    return table


def _with_every_seed_columns(columns: list[Column], narrowed: dict, cells: dict, worst_case: bool) -> list[Column]:
    """Every-seed columns of worst cases whose attacks ran on only some seeds: in the worst-case table
    right after their worst-case column, in the plain table after the last worst case of their threat
    (so that each header spans consecutive columns)."""
    extra: dict[tuple, list[Column]] = {}  # the column to follow -> columns
    for column in columns:
        entry = narrowed.get(column.key)
        if entry is None or not entry.every_seed:
            continue
        threat = column.key[1]
        if worst_case:
            anchor, new = column.key, Column(column.group, EVERY_SEED_NAME, entry.every_seed_key)
        else:
            anchor = [c.key for c in columns if c.key[0] == column.key[0] and c.key[1] == threat][-1]
            new = Column(f"{EVERY_SEED_NAME} {THREATS.get(threat, threat)} (ε)", column.label, entry.every_seed_key)
        extra.setdefault(anchor, []).append(new)
        cells.update(entry.every_seed)
    return [c for column in columns for c in [column, *extra.get(column.key, [])]]


def _plain_columns(records: list[Record]) -> list[Column]:
    return [Column(certified_group(p) if is_certified(t) else perturbation_label(p, t), severity_label(s, t),
                   (p, t, s)) for p, t, s in column_order(records)]


def _worst_case_columns(records: list[Record]) -> list[Column]:
    """Per threat and epsilon: every individual attack, then the worst-case union."""
    keys = [k for k in ordered(column_key(r) for r in records) if k[1] in ("linf", "l2") or is_certified(k[1])]
    first = {k: i for i, k in enumerate(keys)}
    # a certified column sits right after the worst case of the same L2 epsilon
    keys.sort(key=lambda k: (THREAT_ORDER["l2" if is_certified(k[1]) else k[1]], k[2],
                             2 * is_certified(k[1]) + (k[0] == WORST_CASE), first[k]))
    return [Column(*certified_column(p, s), (p, t, s)) if is_certified(t)
            else Column(threat_severity_label(t, s), perturbation_name(p), (p, t, s)) for p, t, s in keys]


def _sizes(table: Table) -> str:
    """The evaluated subset size, naming the columns that used another (the eps = 1 sanity PGD)."""
    by_column = {c: {n for m in table.methods if table.cell(m, c) for n in table.cell(m, c).n}
                 for c in table.columns}
    counts = Counter(n for sizes in by_column.values() for n in sizes)
    usual = counts.most_common(1)[0][0]
    odd = [f"{c.group} {c.label}".strip() + f": {', '.join(map(str, sorted(sizes)))}"
           for c, sizes in by_column.items() if sizes - {usual}]
    return f"n = {usual}" + (f" ({'; '.join(odd)})" if odd else "")


def _notes(table: Table, grad_solvers) -> list[str]:
    n_seeds = max(len(c.values) for c in table.cells.values())
    notes = [f"Accuracy in %, on {_sizes(table)} test examples"
             + (f"; mean ± std over up to {n_seeds} checkpoints (train seeds)." if n_seeds > 1 else ".")
             + (" Bold: best in its column." if any(c.best for c in table.cells.values()) else "")]
    if grad_solvers:
        notes.append(f"Gradient attacks through {', '.join(grad_solvers)} only; worst-case unions omitted.")
    else:
        notes.append("Each attack cell is the lowest robust accuracy over the gradient solvers "
                     "(deployed, RK4 unroll, BPDA) and attack settings evaluated.")
    if any(is_certified(c.key[1]) for c in table.columns):
        notes.append(CERTIFIED_NOTE)
    failed = table.failed_checks()
    if failed:
        notes.append(f"† a sanity check failed for this cell ({', '.join(failed)}); see records.jsonl.")
    flags = table.attack_flags()
    if flags:
        notes.append(f"‡ the attack's own library flagged this cell ({', '.join(flags)}): "
                     "the evaluation may be unreliable; the messages are in records.jsonl.")
    return notes
