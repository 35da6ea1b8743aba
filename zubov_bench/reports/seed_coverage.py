"""Cells of attacks that ran on only some training seeds (a reproduce preset's `{attack: ..., seeds: [0]}`).

An attack restricted to some seeds leaves the other seeds' per-checkpoint worst case weaker (a higher
upper bound): averaging it with the restricted seeds' strict worst case would mix two different
numbers under one mean ± std. So, where a method's checkpoints ran different attack sets at one
(threat, ε):

* the worst-case column keeps only the checkpoints that ran every attack (the strict worst case,
  e.g. seed 0 alone, so no ± std), and
* a second column, "worst case, every seed", is the per-example worst case over the attacks that
  ran on every seed, recomputed from the per-example outcomes for the checkpoints that ran more,
  mean ± std over all seeds: a weaker bound, but one number of the same kind per seed.

A note names the restricted attacks and their seeds, and how much weaker the every-seed bound is
where that can be measured: on the checkpoints that ran every attack, the every-seed worst case minus
the strict one, per method (an attack that converges slowly on one model, as fixed-step PGD does on
some fields, loosens that model's every-seed bound more than another's and can reorder the column). Per-attack cells simply have fewer checkpoints;
a note names those too ("autoattack: training seed 0 only").
"""
from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field

import numpy as np

from ..records import Record
from .aggregate import CLEAN, WORST_CASE, Cell, column_key
from .labels import THREATS, perturbation_name, severity_label

EVERY_SEED = "worst-case-every-seed"  # the column key's perturbation: not a record, a recomputed union
EVERY_SEED_NAME = "Worst case, every seed"


@dataclass
class Narrowed:
    """One worst-case column (threat, ε) whose checkpoints ran different attack sets."""

    key: tuple  # (WORST_CASE, threat, severity)
    partial: dict = field(default_factory=dict)  # attack name -> training seeds that ran it
    seeds: set = field(default_factory=set)  # every training seed in the column
    every_seed: dict = field(default_factory=dict)  # (method, EVERY_SEED key) -> Cell
    looseness: dict = field(default_factory=dict)  # method -> largest every-seed minus strict, complete checkpoints

    @property
    def every_seed_key(self) -> tuple:
        return (EVERY_SEED, *self.key[1:])


def _identity(record: Record) -> tuple:
    """An attack as run: name, kind of gradient view and settings. Not the view's step count (each
    checkpoint picks its own RK4 unroll) nor where the work's inputs came from (Record.attack_settings)."""
    return (record.perturbation, record.grad_solver.partition(":")[0],
            json.dumps(record.attack_settings, sort_keys=True, default=str))


def _seeds_text(seeds) -> str:
    return ", ".join(str(s) for s in sorted(seeds))


def narrow_worst_cases(cells: dict[tuple, Cell], records: list[Record], outcomes=None) -> list[Narrowed]:
    """Restrict each affected worst-case cell to its complete checkpoints (in place) and, when
    `outcomes(record_id)` can read per-example arrays, build the every-seed cells."""
    by_id = {r.id: r for r in records}
    seed_of = {r.checkpoint_sha256: r.train_seed for r in records}
    attack_sets: dict[tuple, dict[str, set]] = {}  # (method, key) -> sha -> attack identities
    worst: dict[tuple, list[Record]] = {}
    for r in records:
        if r.perturbation == WORST_CASE and r.members:
            idents = {_identity(by_id[m]) for m in r.members if m in by_id}
            attack_sets.setdefault((r.method, column_key(r)), {}).setdefault(r.checkpoint_sha256, set()).update(idents)
            worst.setdefault((r.method, column_key(r)), []).append(r)
    narrowed: dict[tuple, Narrowed] = {}
    for (method, key), per_sha in attack_sets.items():
        full, common = set().union(*per_sha.values()), set.intersection(*per_sha.values())
        if full == common:
            continue
        entry = narrowed.setdefault(key, Narrowed(key))
        entry.seeds |= {seed_of[sha] for sha in per_sha}
        for ident in full - common:
            entry.partial.setdefault(perturbation_name(ident[0]), set()).update(
                seed_of[sha] for sha, idents in per_sha.items() if ident in idents)
        cell = cells.get((method, key))
        if cell is None:
            continue
        if outcomes is not None:
            every = Cell(n=set(cell.n), failed=set(cell.failed), flags=set(cell.flags))
            for sha in per_sha:
                every.values[sha] = _common_union(worst[(method, key)], sha, common, by_id, outcomes)
            entry.every_seed[(method, entry.every_seed_key)] = every
            gaps = [every.values[sha] - cell.values[sha] for sha in per_sha
                    if per_sha[sha] == full and sha in cell.values]
            if gaps:
                entry.looseness[method] = max(gaps)
        cell.values = {sha: v for sha, v in cell.values.items() if per_sha.get(sha) == full}
        if not cell.values:
            del cells[(method, key)]
    return list(narrowed.values())


def _common_union(worst: list[Record], sha: str, common: set, by_id: dict, outcomes) -> float:
    """Per-example worst case over the common attacks, min over a checkpoint's worst-case records of
    one evaluation seed, averaged over evaluation seeds (as aggregate does for stored records)."""
    per_seed: dict[int, list[float]] = {}
    for w in worst:
        if w.checkpoint_sha256 != sha:
            continue
        members = [by_id[m] for m in w.members if m in by_id and _identity(by_id[m]) in common]
        if {_identity(m) for m in members} == {_identity(by_id[m]) for m in w.members if m in by_id}:
            value = w.robust_acc  # nothing to leave out: the stored union is the common one
        else:
            robust = np.logical_and.reduce([outcomes(m.id)["robust"] for m in members])
            value = float(robust.mean()) if len(robust) else float("nan")
        per_seed.setdefault(w.seed, []).append(value)
    return statistics.fmean(min(v) for v in per_seed.values())


def narrowed_notes(entries: list[Narrowed]) -> list[str]:
    """One note per distinct coverage: the columns that share it are named together, not repeated."""
    groups: dict[tuple, list[Narrowed]] = {}
    for entry in entries:
        coverage = (tuple(sorted((n, tuple(sorted(s))) for n, s in entry.partial.items())),
                    tuple(sorted(entry.seeds)), bool(entry.every_seed))
        groups.setdefault(coverage, []).append(entry)
    return [narrowed_note(group[0], _where(group), _looseness(group)) for group in groups.values()]


def _looseness(entries: list[Narrowed]) -> dict[str, float]:
    """method -> its largest every-seed-minus-strict gap over the columns of a group."""
    largest: dict[str, float] = {}
    for entry in entries:
        for method, gap in entry.looseness.items():
            largest[method] = max(gap, largest.get(method, gap))
    return largest


def _where(entries: list[Narrowed]) -> str:
    """'L∞ ε = 0.05, 0.1; L₂ ε = 1' for the columns of a group, threats in order of appearance."""
    by_threat: dict[str, list[str]] = {}
    for entry in entries:
        threat, eps = entry.key[1], entry.key[2]
        by_threat.setdefault(threat, []).append(severity_label(eps, threat))
    return "; ".join(f"{THREATS.get(threat, threat)} ε = {', '.join(labels)}" for threat, labels in by_threat.items())


def narrowed_note(entry: Narrowed, where: str, looseness: dict[str, float] | None = None) -> str:
    ran = "; ".join(f"{name} on training seed(s) {_seeds_text(seeds)} only" for name, seeds in
                    sorted(entry.partial.items()))
    text = (f"Worst case at {where}: {ran} (of seeds {_seeds_text(entry.seeds)}), so the worst-case column "
            "is the strict worst case of the checkpoints that ran every attack")
    if entry.every_seed:
        left_out = ", ".join(sorted(entry.partial))
        text += (f"; \"{EVERY_SEED_NAME}\" is the per-example worst case over the attacks run on every "
                 f"seed (without {left_out}: a weaker bound), mean ± std over all seeds.")
        if looseness:
            ranked = sorted(looseness.items(), key=lambda item: -item[1])
            text += (f" On the checkpoints that ran every attack, leaving {left_out} out "
                     "raises the worst case by up to "
                     + ", ".join(f"{100 * gap:.1f} points ({method})" for method, gap in ranked)
                     + ": a difference in that column smaller than these may be the attacks', not the models'.")
        return text
    return text + "; the every-seed worst case needs the per-example outcomes and is not shown here."


def partial_attack_notes(cells: dict[tuple, Cell], records: list[Record], keys: list[tuple]) -> list[str]:
    """'NAME: training seed(s) 0 only' for attack columns evaluated on fewer seeds than clean accuracy."""
    seed_of = {r.checkpoint_sha256: r.train_seed for r in records}
    methods = {m for m, _ in cells}
    short: dict[str, set] = {}
    for key in keys:
        if key == CLEAN or key[0] in (WORST_CASE, EVERY_SEED):
            continue
        for method in methods:
            cell, clean = cells.get((method, key)), cells.get((method, CLEAN))
            if cell is not None and clean is not None and set(cell.values) < set(clean.values):
                short.setdefault(perturbation_name(key[0]), set()).update(seed_of[s] for s in cell.values)
    if not short:
        return []
    listed = "; ".join(f"{name}: training seed(s) {_seeds_text(seeds)} only" for name, seeds in sorted(short.items()))
    return [f"{listed}; every other column is over every training seed of its method."]
