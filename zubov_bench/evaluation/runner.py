"""`evaluate(...)`: the whole evaluation, done right by default (RobustBench-style).

Every registered perturbation at the dataset's grid; gradient attacks on ODE models run through
the deployed solver and an RK4 unroll; adversarial examples are scored on the deployed model;
the headline number per ε is the per-example worst case; the sanity checks run automatically.
"""
from __future__ import annotations

import dataclasses
import glob
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..checkpoint import read_payload
from ..device import deterministic_algorithms, resolve_device
from ..errors import UserError
from ..io import log_to_stderr
from ..models.protocols import is_lyapunov_model
from ..records import Record
from .alignment import AlignmentConfig, alignment_diagnostics, alignment_entry, has_alignment, store_alignment
from .batch import FLAGS, flags_array, flags_sanity, input_gradient_norms, run_batch
from .context import CheckpointContext, load_context, resolve_views
from .paper_protocol import PAPER, paper_attack_for
from .plan import (SANITY_EPS, SANITY_SAMPLES, AttackRequest, batch_slices, parse_attacks, parse_eps,
                   parse_shard, shard_batches)
from .sanity import GRAD_ZERO, MODEL_CHECKS, GradStats, run_checks
from .solver_view import GradSolver, parse_grad_solvers
from .store import ResultsStore, check_writable_target, concat_outcomes, record_from_outcomes
from .worst_case import update_worst_case

DEFAULT_BATCH_SIZE = 250


@dataclass
class Job:
    perturbation: object
    severity: float
    grad_solver: GradSolver | None  # None: the attack uses no gradients of the model
    n: int  # subset size (the large-ε sanity run uses fewer samples)
    sanity: bool = False

    @property
    def solver_label(self) -> str:
        return "none" if self.grad_solver is None else str(self.grad_solver)

    def describe(self) -> str:
        return f"{self.perturbation.name} {self.severity:g} {self.solver_label}"


def evaluate(checkpoints, attacks="all", eps=None, n_samples: int = 500, batch_size: int = DEFAULT_BATCH_SIZE,
             seed: int = 0, device: str = "auto", grad_solver=None, out="results/eval", force: bool = False,
             shard=None, transfer_from=None, data_root=None, download: bool = False, progress: bool = True,
             log: Callable[[str], None] = log_to_stderr, jobs: int = 1) -> list[Record]:
    """Evaluate checkpoints; returns the records of this evaluation (worst case included).

    `jobs` > 1 runs shards 0..jobs-1 in as many worker processes, then merges them here.
    """
    worker_args = dict(checkpoints=checkpoints, attacks=attacks, eps=eps, n_samples=n_samples,
                       batch_size=batch_size, seed=seed, device=device, grad_solver=grad_solver, out=out,
                       force=force, transfer_from=transfer_from, data_root=data_root, download=download)
    paths = resolve_checkpoints(checkpoints)
    validate_sizes(n_samples, batch_size, seed)
    eps = parse_eps(eps)
    shard = parse_shard(shard)
    _check_jobs(jobs, shard)
    views = parse_grad_solvers(grad_solver) if isinstance(grad_solver, (str, type(None))) else list(grad_solver)
    if transfer_from is not None and not Path(transfer_from).is_file():
        raise UserError(f"--transfer-from checkpoint not found: {transfer_from}")
    requests = parse_attacks(attacks, transfer_from)
    dev = resolve_device(device)
    for path in paths:  # validate everything before writing anything
        _validate_checkpoint(path, requests, eps, transfer_from)
    check_writable_target(out)
    if jobs > 1:
        run_shard_workers(jobs, worker_args, log)
        force = False  # the workers computed every record; this pass merges and reads them back
    store = ResultsStore(out)
    store.tidy()
    ids: list[str] = []
    with deterministic_algorithms(True, dev):
        for path in paths:
            ctx = load_context(path, n_samples, batch_size, dev, data_root, download)
            resolve_views(ctx, views)
            ids += evaluate_checkpoint(ctx, requests, eps, seed, store, force, shard, progress, log)
            if shard is None and is_lyapunov_model(ctx.model):
                record_alignment(ctx, seed, store, force, log)
    by_id = {r.id: r for r in store.all_records()}
    return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]


def recheck(checkpoints, n_samples: int | None = None, batch_size: int | None = None, seed: int = 0,
            device: str = "auto", grad_solver=None, out="results/eval", data_root=None, download: bool = False,
            log: Callable[[str], None] = log_to_stderr) -> list[Record]:
    """Recompute the worst cases and sanity checks of the records `out` already holds for these
    checkpoints and evaluation seed, attacking nothing: what a store needs after the checks changed.
    The gradient statistics and the unroll choice are measured again on the evaluation's first
    examples: `n_samples` and `batch_size` default to the largest the checkpoint's records name, and
    `grad_solver` should be the evaluation's. Returns the records."""
    paths = resolve_checkpoints(checkpoints)
    validate_sizes(1 if n_samples is None else n_samples, 1 if batch_size is None else batch_size, seed)
    views = parse_grad_solvers(grad_solver) if isinstance(grad_solver, (str, type(None))) else list(grad_solver)
    dev = resolve_device(device)
    check_writable_target(out)
    store = ResultsStore(out)
    stored = store.records()
    shas = {path: read_payload(path).get("sha256") for path in paths}
    mine = {path: [r for r in stored if (r.checkpoint_sha256, r.seed) == (sha, seed)] for path, sha in shas.items()}
    for path, records in mine.items():  # every checkpoint has records before any is rewritten
        if not records:
            raise UserError(f"{out} holds no records of {path} with evaluation seed {seed}; nothing to recheck")
    with deterministic_algorithms(True, dev):
        for path, records in mine.items():
            batches = [r.params["batch_size"] for r in records if "batch_size" in r.params] or [DEFAULT_BATCH_SIZE]
            n = n_samples if n_samples is not None else max(r.params.get("n_samples", r.n) for r in records)
            ctx = load_context(path, n, batch_size if batch_size is not None else max(batches), dev, data_root,
                               download)
            resolve_views(ctx, views)
            finalize(ctx, store, seed)
            log(f"{path}: worst cases and sanity checks recomputed in {out}")
    return [r for r in store.records() if r.checkpoint_sha256 in shas.values() and r.seed == seed]


def record_alignment(ctx: CheckpointContext, seed: int, store: ResultsStore, force: bool, log,
                     cfg: AlignmentConfig = AlignmentConfig()) -> None:
    """Store whether the model's Lyapunov functions are Lyapunov functions of its flow, on the
    evaluated subset (docs/evaluation.md, "Lyapunov alignment")."""
    cfg = dataclasses.replace(cfg, seed=seed)
    if not force and has_alignment(store, ctx.meta["sha256"], seed, ctx.n, cfg):
        return
    diagnostics = alignment_diagnostics(ctx.model, ctx.x, ctx.y, cfg)
    store_alignment(store, alignment_entry(ctx.meta, ctx.path, diagnostics, seed, cfg), replace=True)
    log(f"{ctx.path}: {diagnostics['stable_equilibria']} of {diagnostics['equilibria']} equilibria stable, "
        f"{diagnostics['proa_reach_equilibrium']:.1%} of PRoA points reach their e_k, "
        f"{diagnostics['data_in_proa_zT']:.1%} of clean-correct z(T) in their PRoA")


def _check_jobs(jobs, shard) -> None:
    if not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"--jobs must be a positive integer, got {jobs!r}")
    if jobs > 1 and shard:
        raise UserError("--jobs runs the shards itself; do not combine it with --shard")


def run_shard_workers(jobs: int, args: dict, log: Callable[[str], None]) -> None:
    """Shard i/jobs in worker i, each with an equal share of this process's torch threads.

    Small models gain little from a second intra-op thread, so on a CPU separate processes
    are the way to use several cores. Each shard is resumable on its own.
    """
    from ..workers import spawn_pool, stop_pool

    threads = max(1, torch.get_num_threads() // jobs)
    log(f"eval: {jobs} worker processes, {threads} torch thread(s) each")
    pool = spawn_pool(jobs)
    try:
        futures = [pool.submit(_shard_worker, {**args, "shard": f"{i}/{jobs}"}, threads) for i in range(jobs)]
        for future in futures:
            future.result()  # re-raises a worker's error here
    except BaseException:
        stop_pool(pool, graceful=False)
        raise
    stop_pool(pool, graceful=True)


def _shard_worker(args: dict, threads: int) -> None:
    torch.set_num_threads(threads)
    evaluate(**args, progress=False)


def resolve_checkpoints(checkpoints) -> list[str]:
    items = [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints or [])
    if not items:
        raise UserError("no checkpoint given: pass --checkpoint PATH (repeatable, or a glob)")
    paths = []
    for item in map(str, items):
        matches = sorted(glob.glob(item)) if glob.has_magic(item) else [item]
        if not matches:
            raise UserError(f"no checkpoint matches {item!r}")
        for m in matches:
            if not Path(m).is_file():
                raise UserError(f"checkpoint not found: {m}")
        paths += matches
    return list(dict.fromkeys(paths))


def validate_sizes(n_samples, batch_size, seed) -> None:
    for name, value, low in (("--n-samples", n_samples, 1), ("--batch-size", batch_size, 1), ("--seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise UserError(f"{name} must be an integer >= {low}, got {value!r}")


def _validate_checkpoint(path: str, requests: list[AttackRequest], eps, transfer_from) -> None:
    """Read the checkpoint's metadata and instantiate every attack, so bad input fails early."""
    from ..data.base import DataSpec

    payload = read_payload(path)
    spec = DataSpec.from_dict(payload["data"])
    if transfer_from is not None:
        source = DataSpec.from_dict(read_payload(transfer_from)["data"])
        if (source.name, tuple(source.input_shape), source.num_classes) != \
                (spec.name, tuple(spec.input_shape), spec.num_classes):
            raise UserError(f"--transfer-from {transfer_from} was trained on {source.name}, "
                            f"but {path} on {spec.name}")
    for req in requests:
        if req.name == PAPER:  # resolved per model in plan_jobs
            continue
        perturbation = _create(req)
        perturbation.prepare()
        for severity in _severities(perturbation, req, eps, spec):
            perturbation.check_severity(severity)


def _create(req: AttackRequest):
    from ..perturbations import create_perturbation

    return create_perturbation(req.name, **req.params)


def _severities(perturbation, req: AttackRequest, eps, spec) -> tuple[float, ...]:
    """--eps applies to the chosen attacks; a noise keeps its own grid unless named explicitly."""
    if eps is not None and (perturbation.threat != "noise" or req.explicit):
        return eps
    return tuple(perturbation.default_severities(spec))


def plan_jobs(ctx: CheckpointContext, requests: list[AttackRequest], eps, log) -> list[Job]:
    jobs: list[Job] = []
    for req in requests:
        if req.name == PAPER:
            jobs += _paper_jobs(ctx, eps, log)
            continue
        perturbation = _create(req)
        if not perturbation.applies_to(ctx.model):
            if req.explicit:
                log(f"note: {req.name} does not apply to {ctx.meta['model']} ({ctx.path}); skipped")
            continue
        views = ctx.grad_solvers if perturbation.gradient_based else [None]
        for severity in _severities(perturbation, req, eps, ctx.model.spec):
            jobs += [Job(perturbation, float(severity), view, ctx.n) for view in views]
    if any(job.perturbation.threat != "noise" for job in jobs):
        jobs += _large_eps_jobs(ctx)
    # cheap records first: early results, early sanity (a stable sort keeps the request order)
    return sorted(jobs, key=lambda job: job.perturbation.cost_rank())


def _paper_jobs(ctx: CheckpointContext, eps, log) -> list[Job]:
    """The model's own paper attack, through its deployed solver only (as the paper ran it)."""
    attack = paper_attack_for(ctx.model)
    if attack is None:
        log(f"note: {ctx.meta['model']} declares no paper protocol ({ctx.path}); skipped")
        return []
    view = GradSolver() if attack.gradient_based else None
    return [Job(attack, float(s), view, ctx.n) for s in (eps or attack.default_severities(ctx.model.spec))]


def _large_eps_jobs(ctx: CheckpointContext) -> list[Job]:
    """Sanity check 1: PGD (the attack whose class declares `large_eps_check`) at ε = 1.0 L∞ must
    reach about 0, through every gradient view."""
    from ..perturbations import PERTURBATIONS

    probe = next((cls for _, cls in PERTURBATIONS.items() if cls.large_eps_check), None)
    if probe is None:
        return []
    attack = probe.large_eps_probe()
    return [Job(attack, SANITY_EPS, view, min(ctx.n, SANITY_SAMPLES), sanity=True) for view in ctx.grad_solvers]


def job_record(ctx: CheckpointContext, job: Job, seed: int, shard) -> Record:
    p = job.perturbation
    params = {**p.settings(), "n_samples": job.n}
    if p.threat != "noise":  # attacks see whole batches (random starts, adaptive solvers)
        params["batch_size"] = ctx.batch_size
    if job.sanity:
        params["sanity"] = "large-eps"
    return ctx.record(perturbation=p.name, threat=p.threat, severity=job.severity, seed=seed,
                      grad_solver=job.solver_label, params=params,
                      shard=f"{shard[0]}/{shard[1]}" if shard else "")


def evaluate_checkpoint(ctx, requests, eps, seed, store, force, shard, progress, log) -> list[str]:
    from tqdm import tqdm

    for choice in ctx.unrolls.values():
        log(f"{ctx.path}: {choice.describe(ctx.model)}" + ("" if choice.ok else "  WARNING: below 99%"))
    jobs = plan_jobs(ctx, requests, eps, log)
    todo, ids = [], []
    have = store.ids()
    for job in jobs:
        record = job_record(ctx, job, seed, shard)
        complete_id = dataclasses.replace(record, shard="").id
        ids.append(complete_id)
        if shard:
            ids.append(record.id)
        if force or not ({record.id, complete_id} & have):
            todo.append((job, record))
    if len(todo) < len(jobs):
        log(f"{ctx.path}: {len(jobs) - len(todo)} of {len(jobs)} records already in {store.root}; skipped "
            "(--force recomputes them)")
    total = sum(len(shard_batches(len(batch_slices(job.n, ctx.batch_size)), shard)) for job, _ in todo)
    with tqdm(total=total, disable=not progress, desc="eval", leave=False, dynamic_ncols=True,
              file=sys.stderr) as bar:
        for job, record in todo:
            bar.set_postfix_str(job.describe())
            run_job(ctx, job, record, seed, store, force, shard, bar)
    cells = {(r.threat, round(r.severity, 8), r.params["n_samples"]) for _, r in
             ((j, job_record(ctx, j, seed, None)) for j in jobs)}
    worst = finalize(ctx, store, seed)
    return ids + [r.id for r in worst if (r.threat, round(r.severity, 8), r.params["n_samples"]) in cells]


def run_job(ctx, job: Job, record: Record, seed: int, store: ResultsStore, force: bool, shard, bar) -> Record:
    """Run (or resume) one record batch by batch, then store it with its per-example outcomes."""
    batches = batch_slices(job.n, ctx.batch_size)
    mine = shard_batches(len(batches), shard)
    partial_key = f"{record.id}-b{ctx.batch_size}"
    if force:
        store.clear_batches(partial_key)
    done = store.load_batches(partial_key)
    view = ctx.view(job.grad_solver)
    job.perturbation.work_dir = store.work_dir(partial_key)  # resumable inside a batch (AutoAttack)
    for b in mine:
        if b not in done:
            start = time.perf_counter()
            rows = torch.from_numpy(batches[b])
            dev_rows = rows.to(ctx.device)
            arrays = run_batch(job.perturbation, view, ctx.model, job.severity, seed, ctx.x[dev_rows],
                               ctx.y[dev_rows], ctx.index[rows], ctx.clean[rows], ctx.clean_failed[rows],
                               ctx.clean_nfe[rows])
            arrays["wall"] = np.array(time.perf_counter() - start)
            arrays[FLAGS] = flags_array(job.perturbation.take_flags())
            store.save_batch(partial_key, b, arrays)
            done[b] = arrays
        bar.update(1)
    wall = sum(float(done[b]["wall"]) for b in mine)
    outcomes = concat_outcomes([{k: v for k, v in done[b].items() if k not in ("wall", FLAGS)} for b in mine]) \
        if mine else empty_outcomes()
    record = record_from_outcomes(record, outcomes, wall)
    record.sanity = flags_sanity(job.perturbation.name, [done[b] for b in mine])
    if shard and force:
        store.remove([dataclasses.replace(record, shard="").id])  # the merge rebuilds it
    store.put(record, outcomes, replace=force)
    store.clear_batches(partial_key)
    return record


def empty_outcomes() -> dict[str, np.ndarray]:
    return {"index": np.zeros(0, np.int64), "clean": np.zeros(0, bool), "robust": np.zeros(0, bool),
            "failed": np.zeros(0, bool), "nfe": np.zeros(0, np.float32)}


def finalize(ctx: CheckpointContext, store: ResultsStore, seed: int) -> list[Record]:
    """Merge finished shards, rebuild the worst case and recompute the sanity checks."""
    store.merge_shards()
    sha = ctx.meta["sha256"]
    with store.locked():
        mine = [r for r in store.records() if r.checkpoint_sha256 == sha and r.seed == seed]
        worst = update_worst_case(store, mine)
    records = [r for r in store.records() if r.checkpoint_sha256 == sha and r.seed == seed]
    sanity = run_checks(records, gradient_stats(ctx), ctx.unrolls,
                        ctx.model.solver.describe() if hasattr(ctx.model, "solver") else "")
    store.update_sanity(sanity)
    return worst


def refresh_record_checks(store: ResultsStore, sha256: str, seed: int) -> None:
    """The sanity checks that read records only, for one checkpoint and seed, after records were added
    without an attack run (certificates); the stored MODEL_CHECKS of each record stay as they are."""
    with store.locked():
        records = [r for r in store.records() if r.checkpoint_sha256 == sha256 and r.seed == seed]
        fresh = run_checks(records)
        store.update_sanity({r.id: {**{k: v for k, v in r.sanity.items() if k in MODEL_CHECKS}, **fresh[r.id]}
                             for r in records})


def gradient_stats(ctx: CheckpointContext) -> dict[str, GradStats]:
    """Sanity check 5: input-gradient norms at clean points, through every gradient view."""
    from ..models.ode import SolverError

    n = min(ctx.n, SANITY_SAMPLES)
    out = {}
    for gs in ctx.grad_solvers:
        ce, margin = [], []
        for rows in batch_slices(n, ctx.batch_size):
            rows = torch.from_numpy(rows).to(ctx.device)
            try:
                ce_norms, margin_norms = input_gradient_norms(ctx.view(gs), ctx.x[rows], ctx.y[rows])
            except SolverError:
                ce_norms = margin_norms = torch.zeros(len(rows))  # no gradient at all
            ce.append(ce_norms)
            margin.append(margin_norms)
        ce, margin = torch.cat(ce), torch.cat(margin)
        saturated = (ce <= GRAD_ZERO) & (margin > GRAD_ZERO)
        out[str(gs)] = GradStats(float((ce > GRAD_ZERO).float().mean()), n, float(ce.median()),
                                 float(saturated.float().mean()))
    return out
