"""The evaluation phase of `reproduce`: every trained checkpoint against the preset's attacks.

Each (checkpoint, attack group) is one call of `evaluate`, whose store skips finished records
and resumes unfinished ones batch by batch. A group that completed is remembered in the state
file, so a finished preset re-runs without even reloading its models.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..errors import UserError
from ..evaluation import evaluate
from ..evaluation.paper_protocol import PAPER, PaperAttack, protocol_of
from ..evaluation.plan import parse_attacks
from ..models import MODELS
from ..perturbations import PERTURBATIONS, create_perturbation
from .preset import AttackGroup, CertifyPlan, EvalPlan
from .state import RunState
from .training import RunPlan

ALL = "all"


def attack_name(spec: str) -> str:
    return spec.strip().partition(":")[0]


def needs_source(spec: str) -> bool:
    """Whether the spec's attack replays examples from a source checkpoint (its class's trait);
    `all` does when any registered perturbation does."""
    name = attack_name(spec)
    if name == ALL:
        return any(cls.needs_source for _, cls in PERTURBATIONS.items())
    return name in PERTURBATIONS and PERTURBATIONS.get(name).needs_source


def group_attacks(group: AttackGroup, is_source: bool, left_out: set[str] = frozenset()) -> list[str]:
    """The group's attack specs for one checkpoint: nothing transfers onto its own source, and `all`
    without the `left_out` perturbations is spelled out as the names it stands for."""
    specs = []
    for spec in group.attacks:
        if attack_name(spec) == ALL and left_out:
            specs += [n for n, cls in PERTURBATIONS.items() if not cls.group and n not in left_out]
        else:
            specs.append(spec)
    return [s for s in specs if not (is_source and attack_name(s) != ALL and needs_source(s))]


def narrowed_out(plan: EvalPlan, train_seed: int) -> set[str]:
    """Perturbations that `all` leaves out for this training seed: a bare name given with `seeds:`
    elsewhere (`- all` and `- {attack: autoattack, seeds: [0]}`: AutoAttack on seed 0 only)."""
    return {attack_name(s) for g in plan.groups if not g.runs_on(train_seed) for s in g.attacks
            if ":" not in s and attack_name(s) in PERTURBATIONS}


def same_run(path, checkpoint) -> bool:
    """Whether `path` (a checkpoint a record or an alignment entry names) is this run's checkpoint.
    A run is known by its folder's name (unique in a store), not by the path, so a moved or
    copied store is read right."""
    return bool(path) and Path(path).parent.name == Path(checkpoint).parent.name


def stale_records(records, checkpoint, sha256: str) -> list[str]:
    """Ids of the records that no longer describe the checkpoint of this run, now that its sha256
    is `sha256`: its own records computed on an earlier training of it, any model's records
    replaying examples from an earlier training of it (a transfer source), and the worst cases
    built on either. Left in the store they would sit beside the new records as a second
    measurement of the same run."""
    stale = [r.id for r in records
             if (same_run(r.checkpoint, checkpoint) and r.checkpoint_sha256 != sha256)
             or (same_run(r.params.get("source"), checkpoint) and r.params.get("source_sha256") != sha256)]
    gone = set(stale)  # a worst case unions its members: one of them gone, it is stale too
    return stale + [r.id for r in records if r.id not in gone and gone & set(r.members)]


def transfer_source(plan: EvalPlan) -> str | None:
    """The model whose checkpoints the source-replaying attacks use, if any attack group needs one."""
    wanted = any(needs_source(s) for g in plan.groups for s in g.attacks)
    return plan.transfer_source if wanted else None


def is_paper(spec: str) -> bool:
    """`paper`: each model's own paper attack (a trait of its class), not a perturbation name."""
    return attack_name(spec) == PAPER


def paper_models(models: list[str]) -> tuple[list[str], list[str]]:
    """(models whose class declares a paper protocol, models that declare none)."""
    declared = [m for m in models if protocol_of(MODELS.get(m)) is not None]
    return declared, [m for m in models if m not in declared]


def validate_groups(plan: EvalPlan, models: list[str] = ()) -> None:
    """Fail on a bad attack spec before any training starts. An attack that needs a source is
    checked without it (the source is trained by the preset; creating the attack loads nothing).
    `paper` is checked by building the paper attack each of `models` declares."""
    for group in plan.groups:
        specs = [s for s in group.attacks if attack_name(s) == ALL or not needs_source(s)]
        for request in parse_attacks(specs) if specs else []:
            if request.name == PAPER:
                for model in paper_models(list(models))[0]:
                    PaperAttack(protocol_of(MODELS.get(model)), (1.0,))
                continue
            create_perturbation(request.name, **request.params)
        for spec in group.attacks:
            if attack_name(spec) != ALL and needs_source(spec):
                request, = parse_attacks([spec], transfer_from="")
                create_perturbation(request.name, **{**request.params, "source": None})
                if not plan.transfer_source:
                    raise UserError(f"the preset names the {request.name} attack, which needs a source "
                                    "model, but no eval.transfer_source model")


def _group_key(run: RunPlan, sha: str, attacks: list[str], group: AttackGroup, plan: EvalPlan,
               source_sha: str | None) -> str:
    settings = {"checkpoint": sha, "attacks": attacks, "eps": group.eps, "n": plan.n_samples,
                "batch": plan.batch_size, "seed": plan.seed, "grad_solver": plan.grad_solver,
                "source": source_sha, "dataset": run.dataset}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _certify_key(run: RunPlan, sha: str, certify: CertifyPlan, plan: EvalPlan) -> str:
    settings = {"checkpoint": sha, "certify": certify.method, "settings": certify.settings, "radii": certify.radii,
                "n": certify.n_samples or plan.n_samples, "batch": certify.batch_size, "seed": plan.seed,
                "dataset": run.dataset}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:20]


@dataclass
class EvalCall:
    """One `evaluate` call (a checkpoint and one attack group) or, with kind "certify", one
    `certify_checkpoints` call. Plain data, so a worker process can run it."""

    key: str  # remembered in the state file once the call finished
    run: str  # run name
    kwargs: dict
    kind: str = "eval"


def pending_calls(run: RunPlan, sha: str, plan: EvalPlan, source: tuple[str, str] | None, out,
                  state: RunState, stored_ids: set[str], certify_plans: list[CertifyPlan] = (),
                  **common) -> list[EvalCall]:
    """The evaluate (then certify) calls of one checkpoint that have not finished yet.

    `source` is (checkpoint path, sha256) of the transfer source, or None; `common` holds
    device, data_root, download and progress.
    """
    is_source = source is not None and source[1] == sha
    transfer_from = None if is_source or source is None else source[0]
    calls = []
    for group in plan.groups:
        if not group.runs_on(run.seed):  # e.g. AutoAttack on training seed 0 only
            continue
        attacks = group_attacks(group, is_source, narrowed_out(plan, run.seed))
        if not attacks:
            continue
        key = _group_key(run, sha, attacks, group, plan, None if transfer_from is None else source[1])
        if state.evaluated(key, stored_ids):
            continue
        calls.append(EvalCall(key, run.name, dict(
            checkpoints=[str(run.checkpoint)], attacks=attacks, eps=group.eps, n_samples=plan.n_samples,
            batch_size=plan.batch_size, seed=plan.seed, grad_solver=plan.grad_solver, out=str(out),
            transfer_from=transfer_from, **common)))
    for certify in certify_plans:  # after the attacks, on the first n of the same test subset
        if not certify.runs_on(run.seed):
            continue
        key = _certify_key(run, sha, certify, plan)
        if state.evaluated(key, stored_ids):
            continue
        calls.append(EvalCall(key, run.name, dict(
            checkpoints=[str(run.checkpoint)], method=certify.method,
            radii=None if certify.radii is None else ",".join(f"{r:g}" for r in certify.radii),
            n_samples=certify.n_samples or plan.n_samples, batch_size=certify.batch_size, seed=plan.seed,
            out=str(out), **certify.kwargs(), **common), kind="certify"))
    return calls


def recheck_call(arg: tuple[str, dict], log: Callable[[str], None] | None = None) -> str:
    """One finished run's worst cases and sanity checks recomputed from its stored records
    (`reproduce --recheck`); `arg` is (run name, `recheck` keywords). Returns the run name."""
    from ..evaluation.runner import recheck

    run, kwargs = arg
    recheck(**kwargs, **({"log": log} if log else {}))
    return run


def certify_call(kwargs: dict, log: Callable[[str], None] | None = None) -> list:
    """certify_checkpoints, except that the Lyapunov certificate skips (with a note) a checkpoint whose
    model does not qualify: the model's traits decide (lyapunov_certificate.certifiable_reason)."""
    from ..checkpoint import load_checkpoint
    from ..evaluation.certify import certify_checkpoints
    from ..evaluation.lyapunov_certificate import certifiable_reason

    if kwargs["method"] == "lyapunov":
        path, = kwargs["checkpoints"]
        reason = certifiable_reason(load_checkpoint(path)[0])
        if reason:
            (log or print)(f"[certify] {path}: no Lyapunov certificate: {reason}")
            return []
    return certify_checkpoints(**kwargs, **({"log": log} if log else {}))


def run_calls(calls: list[EvalCall], log: Callable[[str], None] | None = None) -> list[tuple[str, list[str]]]:
    """Run one checkpoint's evaluate calls in order; returns (key, record ids) per call."""
    done = []
    for call in calls:
        if call.kind == "certify":
            records = certify_call(call.kwargs, log)
        else:
            records = evaluate(**call.kwargs, **({"log": log} if log else {}))
        done.append((call.key, [r.id for r in records]))
    return done
