"""The evaluation phase of `reproduce`: every trained checkpoint against the preset's attacks.

Each (checkpoint, attack group) is one call of `evaluate`, whose store skips finished records
and resumes unfinished ones batch by batch. A group that completed is remembered in the state
file, so a finished preset re-runs without even reloading its models.
"""
from __future__ import annotations

import hashlib
import json
from typing import Callable

from ..errors import UserError
from ..evaluation import ResultsStore, evaluate
from ..evaluation.plan import parse_attacks
from ..perturbations import create_perturbation
from .preset import AttackGroup, EvalPlan
from .state import RunState
from .training import RunPlan

TRANSFER = "transfer"


def attack_name(spec: str) -> str:
    return spec.strip().partition(":")[0]


def group_attacks(group: AttackGroup, is_source: bool) -> list[str]:
    """The group's attack specs for one checkpoint: nothing transfers onto its own source."""
    return [s for s in group.attacks if not (is_source and attack_name(s) == TRANSFER)]


def validate_groups(plan: EvalPlan) -> None:
    """Fail on a bad attack spec before any training starts (transfer needs its source first)."""
    for group in plan.groups:
        specs = [s for s in group.attacks if attack_name(s) != TRANSFER]
        for request in parse_attacks(specs) if specs else []:
            create_perturbation(request.name, **request.params)
        if any(attack_name(s) == TRANSFER for s in group.attacks) and not plan.transfer_source:
            raise UserError("the preset names the transfer attack but no eval.transfer_source model")


def _group_key(run: RunPlan, sha: str, attacks: list[str], group: AttackGroup, plan: EvalPlan,
               source_sha: str | None) -> str:
    settings = {"checkpoint": sha, "attacks": attacks, "eps": group.eps, "n": plan.n_samples,
                "batch": plan.batch_size, "seed": plan.seed, "grad_solver": plan.grad_solver,
                "source": source_sha, "dataset": run.dataset}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def evaluate_run(run: RunPlan, sha: str, plan: EvalPlan, source: tuple[str, str] | None, out, state: RunState,
                 *, device="auto", data_root=None, download=False, progress=True,
                 log: Callable[[str], None] = print) -> int:
    """Evaluate one checkpoint group by group; returns how many groups actually ran.

    `source` is (checkpoint path, sha256) of the transfer source, or None.
    """
    is_source = source is not None and source[1] == sha
    ran = 0
    for group in plan.groups:
        attacks = group_attacks(group, is_source)
        if not attacks:
            continue
        key = _group_key(run, sha, attacks, group, plan, None if is_source or source is None else source[1])
        if state.evaluated(key, ResultsStore(out).ids()):
            continue
        records = evaluate(
            [str(run.checkpoint)], attacks=attacks, eps=group.eps, n_samples=plan.n_samples,
            batch_size=plan.batch_size, seed=plan.seed, device=device, grad_solver=plan.grad_solver,
            out=str(out), transfer_from=None if is_source or source is None else source[0],
            data_root=data_root, download=download, progress=progress, log=log)
        state.mark_evaluated(key, run.name, [r.id for r in records])
        ran += 1
    return ran
