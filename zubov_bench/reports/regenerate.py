"""Do two results stores hold the same numbers? `zubov-bench diff OLD NEW` (issue 18).

A regenerated store (`reproduce --preset P --out NEW` in a fresh clone, on another machine) is
compared record by record with the committed one: two records are the same measurement when they
agree in method, dataset, training seed, perturbation, threat, severity, evaluation seed, gradient
solver and attack settings (not in paths, hashes, the batch size or a transfer source's location);
their clean and robust accuracies must then agree within a tolerance. Each checkpoint's final test
accuracy (`checkpoints/manifest.json`) is compared too. docs/reproduce.md states the tolerance the
project promises and why (bitwise only on the same kind of machine).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..records import Record


def measurement(r: Record) -> tuple:
    """What must agree for two records to be the same measurement (not the checkpoint's hash)."""
    return (r.method, r.dataset, r.train_seed, r.perturbation, r.threat, round(float(r.severity), 8), r.seed,
            r.grad_solver, json.dumps(r.attack_settings, sort_keys=True, default=str))


def describe(key: tuple) -> str:
    method, dataset, train_seed, perturbation, threat, severity, seed, solver, params = key
    extra = "" if params == "{}" else f" {params}"
    return f"{method} s{train_seed} {dataset}: {perturbation} {threat} {severity:g} ({solver}, eval seed {seed}){extra}"


@dataclass
class StoreDiff:
    compared: int = 0
    largest: float = 0.0  # the largest difference in accuracy, in [0, 1]
    beyond: list[str] = field(default_factory=list)  # differences larger than the tolerance
    only_old: list[str] = field(default_factory=list)
    only_new: list[str] = field(default_factory=list)


def diff_records(old: list[Record], new: list[Record], tolerance: float, skip=lambda r: False) -> StoreDiff:
    """Every measurement of `new` against the same one in `old` (records for which `skip` holds are
    left out on both sides)."""
    before = {measurement(r): r for r in old if not skip(r)}
    after = {measurement(r): r for r in new if not skip(r)}
    result = StoreDiff(only_old=sorted(describe(k) for k in before.keys() - after.keys()),
                       only_new=sorted(describe(k) for k in after.keys() - before.keys()))
    for key in sorted(before.keys() & after.keys(), key=describe):
        result.compared += 1
        for name in ("clean_acc", "robust_acc"):
            was, now = getattr(before[key], name), getattr(after[key], name)
            result.largest = max(result.largest, abs(now - was))
            if abs(now - was) > tolerance:
                result.beyond.append(f"{describe(key)} {name}: {100 * was:.1f} -> {100 * now:.1f}")
    return result


def _manifest(folder: Path) -> dict:
    path = folder / "checkpoints" / "manifest.json"
    if not path.exists():
        return {}
    entries = json.loads(path.read_text())["checkpoints"]
    return {(e["method"], e.get("dataset"), e.get("seed")): e["test_acc"] for e in entries}


def diff_training(old: Path, new: Path, tolerance: float, result: StoreDiff) -> None:
    """Final test accuracies of the checkpoints both stores trained (their manifests)."""
    before, after = _manifest(Path(old)), _manifest(Path(new))
    for key in sorted(before.keys() & after.keys(), key=str):
        result.compared += 1
        result.largest = max(result.largest, abs(after[key] - before[key]))
        if abs(after[key] - before[key]) > tolerance:
            method, dataset, seed = key
            result.beyond.append(f"{method} s{seed} {dataset}: training test_acc "
                                 f"{100 * before[key]:.2f} -> {100 * after[key]:.2f}")
