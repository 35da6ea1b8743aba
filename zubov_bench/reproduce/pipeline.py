"""`reproduce(preset)`: train every model, evaluate the preset's attacks, write tables, figures
and a README into one folder. Every phase skips or resumes what an earlier invocation finished."""
from __future__ import annotations

import shlex
import shutil
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from ..data import DATASETS, load_dataset
from ..errors import UserError
from ..evaluation import ResultsStore
from ..evaluation.alignment import remove_alignment
from ..io import ensure_writable_dir, log_to_stderr
from ..models import MODELS
from ..device import resolve_device
from .evaluation import pending_calls, recheck_call, run_calls, same_run, stale_records, transfer_source, validate_groups
from .outputs import roa_files, write_figures, write_roa, write_tables
from .parallel import Scheduler, Task
from .preset import Preset, load_preset
from ..provenance import cpu_kind, git_state
from .readme import write_readme
from .state import RunState
from .training import (RunPlan, ensure_trained, finished_once, manifest_entry, plan_run, read_summary, run_state,
                       write_manifest)

CHECKPOINTS = "checkpoints"


@dataclass
class ReproduceResult:
    out: Path
    readme: Path
    tables: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    training: dict[str, str] = field(default_factory=dict)  # run name -> trained | resumed | skipped
    groups_evaluated: int = 0  # evaluate() calls that ran in this invocation
    wall_seconds: float = 0.0


def default_out(preset: Preset) -> Path:
    return Path("results") / preset.name


def resolve_models(preset: Preset, models) -> list[str]:
    """--models a,b, else the preset's list (a sweep: its variant labels), else every registered
    model (looked up now) except the ones the preset excludes."""
    if isinstance(models, str):
        models = [m.strip() for m in models.split(",") if m.strip()]
        if not models:
            raise UserError("--models is empty")
    names = list(models or preset.default_models())
    for name in names:
        if preset.variants and name not in preset.variants:
            raise UserError(f"unknown variant {name!r}; this sweep has: {', '.join(preset.variants)}")
        MODELS.get(preset.variant(name).model)  # a UserError with a suggestion for unknown names
    return list(dict.fromkeys(names))


def equivalent_command(preset: str, out: Path, models, device: str, data_root, download: bool,
                       threads: int | None, jobs: int | None, sweep: bool = False, recheck: bool = False) -> str:
    argv = ["zubov-bench", "sweep", preset] if sweep else ["zubov-bench", "reproduce", "--preset", preset]
    argv += ["--out", str(out)]
    if jobs:
        argv += ["--jobs", str(jobs)]
    if threads:
        argv += ["--threads", str(threads)]
    if models:
        argv += ["--only" if sweep else "--models", models if isinstance(models, str) else ",".join(models)]
    if device != "auto":
        argv += ["--device", device]
    if data_root:
        argv += ["--data-root", str(data_root)]
    if download:
        argv.append("--download")
    if recheck:
        argv.append("--recheck")
    return shlex.join(argv)


def plan_runs(preset: Preset, names: list[str], root: Path) -> list[RunPlan]:
    """Every (dataset, model or variant, seed) run; the transfer source is trained even when not
    evaluated."""
    source = transfer_source(preset.eval)
    extra = [source] if source and source not in names else []
    runs = []
    for dataset in preset.datasets:
        for label in extra + names:
            variant = preset.variant(label)
            role = "evaluated" if label in names else "transfer source only"
            if label == source and label in names:
                role = "evaluated; transfer source"
            train = {**preset.train_overrides(variant.model, dataset), **variant.train}
            model_config = {**preset.model_overrides(variant.model, dataset), **variant.model_config}
            try:  # every run's settings are checked here, so that a typo in one stops nothing half-done
                runs += [plan_run(variant.model, dataset, seed, train, model_config, root, label in names, role,
                                  label) for seed in variant.seeds or preset.seeds]
            except UserError as err:
                raise UserError(f"{label} on {dataset}: {err}") from None
    return runs


def plan_roa_runs(preset: Preset, names: list[str], root: Path) -> list[RunPlan]:
    roa = preset.roa
    if roa is None:
        return []
    return [plan_run(m, roa.dataset, preset.seeds[0], roa.train, roa.model_config, root, False, "RoA figure")
            for m in roa.models if m in names]


def train_unit(run: RunPlan, common: dict, log: Callable[[str], None] = log_to_stderr) -> tuple[str, dict]:
    """One training run (module level, so that a worker process can run it)."""
    return ensure_trained(run, log=log, **common)


def roa_unit(arg: tuple, log: Callable[[str], None] = log_to_stderr) -> float:
    """One region-of-attraction figure; returns the mean PRoA-RoA IoU."""
    out, checkpoint, roa, data_root, download = arg
    return write_roa(out, checkpoint, roa, data_root, download)[1].mean_iou


def plan_line(runs: list[RunPlan], states: dict[str, str]) -> str:
    """What training this invocation faces, said before any of it starts: a run whose folder records
    a finished training but lacks its weights (a store committed without them) is trained again."""
    counts = {state: sum(s == state for s in states.values()) for state in ("done", "resume", "fresh")}
    lost = [run.name for run in runs if states[run.name] != "done" and finished_once(run)]
    return (f"[plan] {len(runs)} run(s): {counts['done']} trained earlier, {counts['resume']} to resume, "
            f"{counts['fresh']} to train" + (f"; {len(lost)} of these recorded as finished but without their "
                                             f"weights, trained again: {', '.join(lost)}" if lost else ""))


# Among ready tasks: the transfer source first (every other evaluation waits for it), then the
# other training runs, then evaluations (slowest model first), then the RoA runs and figures.
PRIORITY_SOURCE, PRIORITY_TRAIN, PRIORITY_EVAL, PRIORITY_ROA = 3e6, 2e6, 1e6, 0.0


class Reproduction:
    """One invocation of a preset: train, evaluate and draw as a task graph, then report."""

    def __init__(self, preset: Preset, out: Path, names: list[str], command: str, *, device: str,
                 data_root, download: bool, progress: bool, log: Callable[[str], None], jobs: int = 1,
                 force: bool = False, recheck: bool = False):
        self.preset, self.out, self.names, self.log = preset, out, names, log
        self.recheck = recheck
        self.device, self.data_root, self.download, self.progress = device, data_root, download, progress
        self.scheduler = Scheduler(jobs, torch.get_num_threads(), log)
        self.ckpt_root = out / CHECKPOINTS
        self.runs = plan_runs(preset, names, self.ckpt_root)  # checks every run's settings ...
        self.roa_runs = plan_roa_runs(preset, names, self.ckpt_root)
        ensure_writable_dir(out)  # ... before anything is written
        if force:
            self._discard_runs()
        self._earlier_records: list | None = None  # the store as this invocation found it (_records_as_found)
        self.earlier_runs = self._earlier_finished_runs()
        self.state = RunState(out, preset.name, command)
        self.state.set_provenance(*git_state(Path(__file__).parent), machine=cpu_kind())
        self.result = ReproduceResult(out, out / "README.md")
        self.summaries: dict[str, dict] = {}
        self.eval_planned: set[str] = set()
        self.roa_lines: list[str] = []

    def _discard_runs(self) -> None:
        """--force: the selected models' run folders go, so they train afresh; their records go
        when the new checkpoints exist (`_drop_stale`)."""
        for run in self.runs + self.roa_runs:
            if run.method in self.names and run.run_dir.is_dir():  # not a source trained only for others
                self.log(f"  --force: removing {run.run_dir} to retrain it")
                shutil.rmtree(run.run_dir)

    def _earlier_finished_runs(self) -> list[RunPlan]:
        """The evaluated runs (and RoA-figure runs) of the preset's other models that an earlier
        invocation finished in this folder. `--models A` adds to a store and leaves the rest as it
        is, so the manifest and the README go on describing those runs too, as their folders record
        them (a store may keep a run's summary and config without its weights, as a repository that
        commits only some does). A transfer source this invocation trains only for others is among
        them if the store holds records of it."""
        others = [name for name in self.preset.default_models() if name not in self.names]
        if not others:
            return []
        evaluated_now = {run.name for run in self.runs if run.evaluate}
        finished = [run for run in plan_runs(self.preset, others, self.ckpt_root)
                    if run.evaluate and run.name not in evaluated_now and finished_once(run)]
        in_store = {record.checkpoint_sha256 for record in self._records_as_found()} if finished else set()
        figures = [run for run in plan_roa_runs(self.preset, others, self.ckpt_root) if finished_once(run)]
        return [run for run in finished if read_summary(run)["sha256"] in in_store] + figures

    def _records_as_found(self) -> list:
        """The store's records before this invocation wrote any, read once: each run trains before
        anything is evaluated on it, and `_drop_stale` keeps the list in step with its removals."""
        if self._earlier_records is None:
            self._earlier_records = ResultsStore(self.out).all_records()
        return self._earlier_records

    def _manifest(self) -> list[dict]:
        """Every checkpoint of the store: this invocation's and the earlier ones of the other models,
        each with its role in the store (an earlier evaluated run keeps "evaluated")."""
        earlier = {run.name: run for run in self.earlier_runs}
        mine = [earlier.pop(r.name, r) for r in self.runs + self.roa_runs if r.name in self.summaries]
        return sorted([manifest_entry(r, self.summaries[r.name], self.ckpt_root) for r in mine]
                      + [manifest_entry(r, read_summary(r), self.ckpt_root) for r in earlier.values()],
                      key=lambda entry: entry["name"])

    @property
    def _common(self) -> dict:
        return dict(device=self.device, data_root=self.data_root, download=self.download, progress=self.progress)

    def _timed(self, phase: str, fn):
        start = time.perf_counter()
        try:
            return fn()
        finally:
            self.state.add_phase_time(phase, time.perf_counter() - start)
            self.state.save()

    # --- the task graph ----------------------------------------------------------------
    def initial_tasks(self) -> list[Task]:
        """Training tasks; finished runs are read here at once (which also checks every folder)."""
        source = transfer_source(self.preset.eval)
        train = partial(train_unit, common=self._common)
        states = {run.name: run_state(run) for run in self.runs + self.roa_runs}
        self.log(plan_line(self.runs + self.roa_runs, states))
        tasks = []
        for run in self.runs + self.roa_runs:
            if states[run.name] == "done":
                tasks += self._trained(run, ensure_trained(run, log=self.log, **self._common))
            else:
                priority = PRIORITY_ROA if run in self.roa_runs else \
                    PRIORITY_SOURCE if run.method == source else PRIORITY_TRAIN
                tasks.append(Task(f"train:{run.name}", train, run, priority))
        return tasks

    def on_done(self, task: Task, result) -> list[Task]:
        handler = {"train": self._trained, "eval": self._evaluated, "recheck": self._rechecked,
                   "roa": self._drawn}[task.name.partition(":")[0]]
        new = handler(task.arg, result)
        self.state.save()
        return new

    def _trained(self, run: RunPlan, result) -> list[Task]:
        what, summary = result
        self.summaries[run.name] = summary
        self._drop_stale(run)
        self.result.training[run.name] = what
        everything = self.runs + self.roa_runs
        self.log(f"[train {len(self.summaries)}/{len(everything)}] {run.name}: {what} "
                 f"(test acc {summary['test_acc']:.4f})")
        write_manifest(self.ckpt_root, self._manifest())
        return self._roa_tasks(run) if run in self.roa_runs else self._eval_tasks()

    def _drop_stale(self, run: RunPlan) -> None:
        """Records computed on, or replaying, an earlier training of this run go (retrained with
        --force, or its folder deleted by hand), and so do its alignment diagnostics: evaluation
        recomputes them for the selected models.

        Only records from before this invocation can be stale (each run trains at most once in it,
        before anything is evaluated on it), so the records are read once, not once per run; the
        alignment file, a line per checkpoint, is read per run under the store's lock."""
        sha = self.summaries[run.name]["sha256"]
        stale = set(stale_records(self._records_as_found(), run.checkpoint, sha))
        if stale:
            self._earlier_records = [r for r in self._earlier_records if r.id not in stale]
            self.log(f"  {run.name}: {len(stale)} record(s) of an earlier training of it removed from {self.out} "
                     "(of it, or replaying it as a transfer source); the selected models' are recomputed")
            ResultsStore(self.out).remove(stale)
        gone = remove_alignment(ResultsStore(self.out), lambda e: same_run(e["checkpoint"], run.checkpoint)
                                and e["checkpoint_sha256"] != sha)
        if gone:
            self.log(f"  {run.name}: {gone} alignment entr{'y' if gone == 1 else 'ies'} of an earlier training "
                     f"of it removed from {self.out}")

    def _source_run(self, run: RunPlan) -> RunPlan | None:
        """The transfer source of the same dataset and seed, else of its first seed (a sweep may
        train the target with more seeds than the source)."""
        name = transfer_source(self.preset.eval)
        candidates = [r for r in self.runs if (r.method, r.dataset) == (name, run.dataset)]
        return next((r for r in candidates if r.seed == run.seed), candidates[0] if candidates else None)

    def _cost(self, run: RunPlan) -> float:
        """Seconds per training epoch: a proxy for how slow the model is to attack."""
        summary = self.summaries[run.name]
        return float(summary.get("train_seconds") or 0.0) / max(int(summary.get("epochs") or 1), 1)

    def _eval_tasks(self) -> list[Task]:
        """Evaluations whose checkpoint and transfer source both exist by now."""
        tasks, stored, checkpoints_in_store = [], None, None
        for run in self.runs:
            source = self._source_run(run)
            if not run.evaluate or run.name in self.eval_planned or run.name not in self.summaries or \
                    (source is not None and source.name not in self.summaries):
                continue
            self.eval_planned.add(run.name)
            if stored is None:  # the store is read once per call, when a run needs it
                found = ResultsStore(self.out).all_records()
                stored = {r.id for r in found}
                checkpoints_in_store = {r.checkpoint_sha256 for r in found if not r.shard}
            source_ckpt = None if source is None else (str(source.checkpoint), self.summaries[source.name]["sha256"])
            calls = pending_calls(run, self.summaries[run.name]["sha256"], self.preset.eval, source_ckpt,
                                  self.out, self.state, stored, self.preset.certify, **self._common)
            if calls:  # evaluate() ends with the worst cases and sanity checks: a recheck comes with it
                tasks.append(Task(f"eval:{run.name}", run_calls, calls, PRIORITY_EVAL + self._cost(run)))
            elif self.recheck and self.summaries[run.name]["sha256"] in checkpoints_in_store:
                tasks.append(Task(f"recheck:{run.name}", recheck_call, (run.name, self._recheck_kwargs(run)),
                                  PRIORITY_EVAL + self._cost(run)))
            else:
                self.log(f"[eval] {run.name}: finished earlier, skipped")
        return tasks

    def _recheck_kwargs(self, run: RunPlan) -> dict:
        plan = self.preset.eval
        return dict(checkpoints=[str(run.checkpoint)], n_samples=plan.n_samples, batch_size=plan.batch_size,
                    seed=plan.seed, grad_solver=plan.grad_solver, out=str(self.out), device=self.device,
                    data_root=self.data_root, download=self.download)

    def _rechecked(self, arg: tuple, run_name: str) -> list[Task]:
        self.state.mark_rechecked(run_name, self.summaries[run_name]["sha256"])
        self.log(f"[recheck] {run_name}: worst cases and sanity checks recomputed")
        return []

    def _evaluated(self, calls, results) -> list[Task]:
        for key, ids in results:
            self.state.mark_evaluated(key, calls[0].run, ids)
        self.result.groups_evaluated += len(results)
        certified = sum(call.kind == "certify" for call in calls)
        self.log(f"[eval] {calls[0].run}: {len(results) - certified} attack group(s) evaluated"
                 + (f", {certified} certificate method(s) run" if certified else ""))
        return []

    def _roa_tasks(self, run: RunPlan) -> list[Task]:
        files = roa_files(self.out, run.name)
        self.result.figures += files
        self.roa_lines.append(self._roa_line(run, files))
        if self.state.figure_done(run.name, self.summaries[run.name]["sha256"], files):
            return []
        arg = (self.out, run.checkpoint, self.preset.roa, self.data_root, self.download)
        return [Task(f"roa:{run.name}", roa_unit, arg, PRIORITY_ROA)]

    def _roa_line(self, run: RunPlan, files: list[Path]) -> str:
        return (f"* `{files[0].relative_to(self.out)}`: {run.model} on {run.dataset} — learned vector field, "
                "PRoA level sets, true RoAs, IoU in the title (+ .pdf, .json)")

    def _drawn(self, arg: tuple, mean_iou: float) -> list[Task]:
        run = next(r for r in self.roa_runs if r.checkpoint == arg[1])
        self.state.mark_figure(run.name, self.summaries[run.name]["sha256"])
        self.log(f"[roa] {run.name}: PRoA-RoA IoU mean {mean_iou:.3f}")
        return []

    # --- reports -----------------------------------------------------------------------
    def reports(self) -> None:
        def work():
            self.result.tables = write_tables(self.out)
            tradeoff = self.preset.tradeoff
            figures = write_figures(self.out, tradeoff["threat"], tradeoff.get("eps"))
            self.result.figures = figures + self.result.figures
        self._timed("reports", work)
        self.log(f"[reports] {len(self.result.tables)} tables, {len(self.result.figures)} figure files")

    def readme(self) -> None:
        grids = {}
        for dataset in self.preset.datasets:
            spec = load_dataset(dataset, self.data_root, self.download).spec
            grids[dataset] = {"linf": tuple(spec.eps_linf), "l2": tuple(spec.eps_l2)}
        self.state.finish()
        for run in self.earlier_runs:
            files = roa_files(self.out, run.name)
            if not run.evaluate and files[0].is_file():
                self.roa_lines.append(self._roa_line(run, files))
        write_readme(self.result.readme, preset=self.preset, out=self.out, command=self.state.current["command"],
                     device=resolve_device(self.device), jobs=self.scheduler.jobs, state=self.state,
                     manifest=self._manifest(),
                     runs=[r for r in self.runs + self.earlier_runs if r.evaluate], dataset_grids=grids,
                     figures=self.result.figures, roa_lines=self.roa_lines)
        self.result.wall_seconds = self.state.current["wall_seconds"]

    def run(self) -> ReproduceResult:
        self.state.save()
        self._timed("train/eval/roa", lambda: self.scheduler.run(self.initial_tasks(), self.on_done))
        self.reports()
        self.readme()
        return self.result


def reproduce(preset: str | Preset, out: str | Path | None = None, *, models=None, device: str = "auto",
              data_root=None, download: bool = False, progress: bool = True, threads: int | None = None,
              jobs: int | None = None, log: Callable[[str], None] = log_to_stderr,
              force: bool = False, recheck: bool = False) -> ReproduceResult:
    """Run (or resume) a preset into `out` (default results/<preset>); see docs/reproduce.md.
    `force` retrains the selected models (all of the preset's, unless `models` narrows them) and
    recomputes their records; `recheck` recomputes the worst cases and sanity checks of the selected
    models' finished records without attacking again."""
    preset_arg = preset if isinstance(preset, str) else preset.name
    preset = load_preset(preset) if isinstance(preset, str) else preset
    out = Path(out) if out is not None else default_out(preset)
    names = resolve_models(preset, models)
    for helper in [preset.eval.transfer_source] + (preset.roa.models if preset.roa else []):
        if helper:
            MODELS.get(preset.variant(helper).model)
    for dataset in preset.datasets + ([preset.roa.dataset] if preset.roa else []):
        DATASETS.get(dataset)
    validate_groups(preset.eval, [preset.variant(name).model for name in names])
    resolve_device(device)
    for option, value in (("--threads", threads), ("--jobs", jobs)):
        if value is not None and value < 1:
            raise UserError(f"{option} must be >= 1, got {value}")
    command = equivalent_command(preset_arg, out, models, device, data_root, download, threads, jobs,
                                 sweep=bool(preset.variants), recheck=recheck)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or preset.threads or previous)
    try:
        return Reproduction(preset, out, names, command, device=device, data_root=data_root,
                            download=download, progress=progress, log=log, jobs=jobs or preset.jobs,
                            force=force, recheck=recheck).run()
    finally:
        torch.set_num_threads(previous)
