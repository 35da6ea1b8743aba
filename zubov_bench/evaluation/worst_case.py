"""The headline number: per-example worst case over every attack run at one ε.

For each (checkpoint, threat linf|l2, ε, seed, subset size) one record with
perturbation="worst-case", grad_solver="all": a sample counts as robust only if it is robust
under every member record (every attack, every gradient solver).
"""
from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .. import __version__
from ..records import Record
from .store import ResultsStore, record_from_outcomes

WORST_CASE = "worst-case"
ATTACK_THREATS = ("linf", "l2")


def is_member(r: Record) -> bool:
    # the paper protocol (evaluation/paper_protocol.py) is shown beside the worst case, never inside it
    return (r.threat in ATTACK_THREATS and r.perturbation != WORST_CASE and not r.shard
            and not r.params.get("sanity") and r.params.get("protocol") != "paper")


def group_key(r: Record) -> tuple:
    return (r.checkpoint_sha256, r.dataset, r.threat, round(r.severity, 8), r.seed,
            r.params.get("n_samples", r.n))


def union_outcomes(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    index = parts[0]["index"]
    for p in parts[1:]:
        if not np.array_equal(p["index"], index):
            raise ValueError("member records were evaluated on different samples")
    out = {"index": index,
           "clean": np.logical_and.reduce([p["clean"] for p in parts]),
           "robust": np.logical_and.reduce([p["robust"] for p in parts])}
    out["failed"] = np.logical_or.reduce([p.get("failed", np.zeros(len(index), bool)) for p in parts])
    return out


def worst_case_record(store: ResultsStore, members: list[Record]):
    members = sorted(members, key=lambda r: r.id)
    outcomes = union_outcomes([store.outcomes(m.id) for m in members])
    base = dataclasses.replace(
        members[0], perturbation=WORST_CASE, grad_solver="all",
        params={"n_samples": members[0].params.get("n_samples", members[0].n)},
        members=[m.id for m in members], sanity={}, shard="", suite_version=__version__)
    return record_from_outcomes(base, outcomes, sum(m.wall_time for m in members)), outcomes


def member_groups(records: list[Record]) -> dict[tuple, list[Record]]:
    """The attack records of every worst-case cell, keyed by `group_key`."""
    groups: dict[tuple, list[Record]] = {}
    for r in records:
        if is_member(r):
            groups.setdefault(group_key(r), []).append(r)
    return groups


def stale_worst_cases(records: list[Record]) -> list[Record]:
    """Worst-case records whose members are no longer exactly the attack records of their cell
    (an attack added after a refused rebuild, or a member removed): their number would be wrong."""
    groups = member_groups(records)
    return [r for r in records if r.perturbation == WORST_CASE and r.members  # hand-made records name none
            and set(r.members) != {m.id for m in groups.get(group_key(r), [])}]


def update_worst_case(store: ResultsStore, records: list[Record]) -> list[Record]:
    """(Re)build the worst-case records over `records`; returns them (stored ones kept if unchanged)."""
    groups = member_groups(records)
    stored = {r.id: r for r in store.records()}
    out = []
    for members in groups.values():
        try:
            record, outcomes = worst_case_record(store, members)
        except ValueError as exc:
            warnings.warn(f"worst case skipped: {exc}")
            continue
        old = stored.get(record.id)
        if old is None or old.members != record.members or old.robust_acc != record.robust_acc:
            store.put(record, outcomes, replace=True)
        else:
            record = old
        out.append(record)
    return out
