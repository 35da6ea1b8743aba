"""The "paper protocol" and "gap" columns: each baseline's own paper attack next to the strict worst case.

Paper-protocol records (params["protocol"] == "paper", see evaluation/paper_protocol.py) never enter
the ordinary cells or the worst case; they get their own columns, at the dataset's standard L∞ ε
(every ε they were run at when the dataset has no standard one). Gap = paper-protocol accuracy minus
the strict worst-case accuracy of the same checkpoint, ε and subset size: how much the paper's
protocol overstates robustness.
"""
from __future__ import annotations

from ..evaluation.paper_protocol import is_paper_record, paper_gap, paper_protocol_accuracy  # noqa: F401 (re-exported)
from ..records import Record
from .aggregate import WORST_CASE, Cell

PAPER_COLUMN = "paper-protocol"
GAP_COLUMN = "paper-gap"
PAPER_NOTE = ("Paper protocol: the attack each baseline's own paper used (docs/evaluation.md, "
              "\"Paper protocol versus strict protocol\"), not part of the worst case; "
              "gap = paper protocol − strict worst case, same examples (positive: the paper's protocol overstates robustness).")


def split_paper_records(records: list[Record]) -> tuple[list[Record], list[Record]]:
    """(strict records, paper-protocol records)."""
    return [r for r in records if not is_paper_record(r)], [r for r in records if is_paper_record(r)]


def paper_eps(paper: list[Record], dataset: str) -> list[float]:
    from .robustbench import STANDARD_LINF_EPS

    present = sorted({round(r.severity, 8) for r in paper if r.threat == "linf" and r.dataset == dataset})
    standard = STANDARD_LINF_EPS.get(dataset)
    if standard is not None and round(standard, 8) in present:
        return [round(standard, 8)]
    return present


def paper_cells(paper: list[Record], strict: list[Record], dataset: str) -> list[tuple[str, tuple, dict]]:
    """[(label, column key, {(method, key): Cell})] for the paper-protocol and gap columns."""
    out = []
    worst = [r for r in strict if r.perturbation == WORST_CASE and r.threat == "linf"]
    for eps in paper_eps(paper, dataset):
        at_eps = [r for r in paper if r.threat == "linf" and round(r.severity, 8) == eps and not r.shard]
        acc_key, gap_key = (PAPER_COLUMN, "linf", eps), (GAP_COLUMN, "linf", eps)
        acc_cells: dict = {}
        gap_cells: dict = {}
        for r in at_eps:
            sha = r.checkpoint_sha256
            acc = acc_cells.setdefault((r.method, acc_key), Cell())
            acc.values[sha] = min(acc.values.get(sha, 1.0), r.robust_acc)
            acc.n.add(r.n)
            gap = paper_gap(at_eps + worst, sha, eps)
            if gap is not None:
                cell = gap_cells.setdefault((r.method, gap_key), Cell())
                cell.values[sha] = gap
                cell.n.add(r.n)
        out.append((f"ε = {eps:g}", acc_key, acc_cells))
        out.append((f"gap ε = {eps:g}", gap_key, gap_cells))
    return out
