"""`<out>/README.md`: the exact command, the machine, the wall time, the commit, what was
reduced versus the full protocol (docs/evaluation.md), and the main table."""
from __future__ import annotations

import os
import platform
from pathlib import Path

import torch

from .. import __version__
from ..io import write_text
from ..perturbations import PERTURBATIONS
from ..perturbations.registry import group_members
from ..presets import resolve_preset
from ..provenance import cpu_kind, git_state
from .evaluation import is_paper, paper_models, transfer_source
from .preset import Preset

FULL_N_SAMPLES = 1000  # the protocol's minimum subset (the paper preset uses whole test sets)
IGNORED_PARAMS = {"source", "norm"}  # a path and a threat model, not budgets


def machine(device: torch.device, jobs: int) -> list[str]:
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_kind()
    return [f"{platform.platform()}, Python {platform.python_version()}",
            f"{os.cpu_count()} CPU cores; torch {torch.__version__}; {jobs} worker process(es) with "
            f"{torch.get_num_threads()} torch thread(s) each",
            f"device: {device} ({name}); zubov-bench {__version__}"]


def _attack_reductions(spec: str, eps, dataset_grid: dict) -> list[str]:
    """Parameters of one attack spec that differ from the perturbation's defaults, and a
    severity grid narrower than the dataset's."""
    from ..evaluation.plan import _parse_params
    from ..perturbations.params import build_params, params_to_dict

    name, _, arg = spec.partition(":")
    if name == "all" or is_paper(spec) or (name not in PERTURBATIONS and group_members(name)):
        return []  # `paper` runs each model's paper settings: nothing of it is reduced here
    cls = PERTURBATIONS.get(name)
    given = {k: v for k, v in _parse_params(arg, spec).items() if k not in IGNORED_PARAMS}
    default = params_to_dict(build_params(cls.Params, {}, name))
    chosen = params_to_dict(build_params(cls.Params, given, name))
    out = [f"`{spec}`: {key} = {_text(chosen[key])} (full protocol: {_text(default[key]) or 'its default'})"
           for key in given if str(chosen[key]) != str(default[key])]
    grid = dataset_grid.get(threat_of(name, given))
    if eps is not None and grid and tuple(eps) != tuple(grid):
        out.append(f"`{spec}` only at {', '.join(f'{e:g}' for e in eps)} "
                   f"(dataset grid: {', '.join(f'{e:g}' for e in grid)})")
    return out


def threat_of(name: str, params: dict) -> str:
    """The threat of an attack spec (creating a perturbation loads nothing, not even a source)."""
    from ..perturbations import create_perturbation

    return create_perturbation(name, **params).threat


def severities(spec: str, eps, grids: dict[str, dict], models: list[str] = ()) -> str:
    """The severities `evaluate` uses for one attack spec (an explicit noise takes `eps` too)."""
    from ..evaluation.plan import _parse_params

    name, _, arg = spec.partition(":")
    if is_paper(spec):
        declared, undeclared = paper_models(list(models))
        at = ", ".join(f"{v:g}" for v in eps) if eps else "the dataset's grid of its threat"
        return (f"each model's own paper attack ({', '.join(declared) or 'no model here declares one'}) at {at}, "
                "nominal ε in its paper's units, beside the worst case, not in it"
                + (f"; no paper protocol: {', '.join(undeclared)}" if undeclared else ""))
    if name == "all":
        return "every registered perturbation outside a group at its own grid"
    if name not in PERTURBATIONS and group_members(name):
        return f"the {name} group ({len(group_members(name))} perturbations), each at its own grid"
    cls = PERTURBATIONS.get(name)
    threat = threat_of(name, _parse_params(arg, spec))
    if eps or threat == "noise":
        return f"{threat}: " + ", ".join(f"{v:g}" for v in eps or cls.noise_grid)
    per_dataset = {ds: ", ".join(f"{v:.4g}" for v in grid.get(threat, ())) for ds, grid in grids.items()}
    if len(set(per_dataset.values())) == 1:
        return f"{threat}: " + next(iter(per_dataset.values()))
    return f"{threat}: " + "; ".join(f"{ds} {values}" for ds, values in per_dataset.items())


def _text(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)


def reductions(preset: Preset, runs, dataset_grids: dict[str, dict]) -> list[str]:
    """What this preset runs below the full protocol, derived from its data."""
    plan = preset.eval
    lines = []
    if plan.n_samples < FULL_N_SAMPLES:
        lines.append(f"{plan.n_samples} test samples per record (full protocol: >= {FULL_N_SAMPLES})")
    named = {spec.partition(":")[0] for g in plan.groups for spec in g.attacks}
    # a group's members are named by their group; `all` runs everything outside a group
    missing = sorted({cls.group or n for n, cls in PERTURBATIONS.items()
                      if n not in named and cls.group not in named and ("all" not in named or cls.group)})
    if missing:
        lines.append(f"not run: {', '.join(missing)}")
    grid = next(iter(dataset_grids.values()), {})
    for group in plan.groups:
        for spec in group.attacks:
            lines += _attack_reductions(spec, group.eps, grid)
        trained = sorted({run.seed for run in runs})
        if group.seeds is not None and set(trained) - set(group.seeds):
            lines.append(f"{', '.join(f'`{s}`' for s in group.attacks)} only on the checkpoints of training "
                         f"seed(s) {', '.join(map(str, group.seeds))} (of {', '.join(map(str, trained))}); the "
                         "tables' notes say which columns that narrows and how the worst case treats it")
    if plan.grad_solver:
        lines.append(f"gradients only through {plan.grad_solver} (full protocol: deployed + an RK4 unroll)")
    selected = {run.method for run in runs}
    lines += [f"model `{model}` left out: {why} (list it in --models to include it)"
              for model, why in preset.exclude.items() if model not in selected]
    unrun = [name for name in preset.default_models() if name not in selected]
    if unrun:
        lines.append(f"not run (left out by --models): {', '.join(f'`{name}`' for name in unrun)}")
    shorter = []
    for run in runs:
        full = resolve_preset(run.model, run.dataset)["train"]["epochs"]
        if int(run.resolved["train"]["epochs"]) < int(full):
            shorter.append(f"{run.method} {run.resolved['train']['epochs']} (preset {full})")
    if shorter:
        lines.append("training epochs below the dataset presets: " + ", ".join(shorter))
    return lines + list(preset.notes)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


DIRTY = "+dirty"  # a training commit whose checkout had uncommitted code changes (env.json's git_dirty)


def _counts(values: list, name=lambda v: f"`{v}`") -> str:
    """"A (3), B (1)": each distinct value named, with how often it occurs, in order of appearance."""
    counts: dict = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return ", ".join(f"{name(v) if v else 'not recorded'} ({n})" for v, n in counts.items())


def _commit_counts(commits: list) -> str:
    return _counts(commits, lambda c: f"`{c[:12]}`{' with uncommitted code changes' if c.endswith(DIRTY) else ''}")


def provenance(out: Path, state) -> list[str]:
    """Which commits computed what: training from each checkpoint's env.json, the attacks and
    certificates from reproduce.json (per finished unit, recorded since the commit field exists)."""
    import json

    trained, processors = [], []
    for env in sorted((out / "checkpoints").glob("*/env.json")):
        try:
            recorded = json.loads(env.read_text())
        except (OSError, json.JSONDecodeError):
            recorded = {}
        commit = recorded.get("git_commit")
        trained.append(commit + DIRTY if commit and recorded.get("git_dirty") else commit)
        processors.append(recorded.get("cpu"))
    evaluated = [entry.get("commit") for entry in state.data.get("evaluated", {}).values()]
    rechecked = [entry.get("commit") for entry in state.data.get("rechecked", {}).values()]
    lines = []
    if trained:
        lines.append(f"* **Training commits** (checkpoints' `env.json`, runs per commit): {_commit_counts(trained)}")
        lines.append(f"* **Training processors** (`env.json`'s `cpu`, runs per processor): {_counts(processors)}")
    machines = [i.get("machine") for i in state.invocations]
    if any(machines):
        lines.append(f"* **Invocation processors** (`reproduce.json`, invocations per processor): {_counts(machines)}")
    if evaluated:
        lines.append("* **Evaluation commits** (`reproduce.json`, finished attack groups and certificates per "
                     f"commit): {_commit_counts(evaluated)}")
        if None in evaluated:
            earlier = sorted({i["commit"][:12] for i in state.invocations if i.get("commit")} - {None})
            lines.append("  (\"not recorded\": finished by an invocation from before reproduce recorded commits"
                         + (f"; commits of the invocations that recorded one: {', '.join(earlier)}" if earlier else "")
                         + ")")
    if rechecked:
        lines.append("* **Sanity checks recomputed** (`--recheck`, `reproduce.json`, runs per commit): "
                     f"{_commit_counts(rechecked)}; the worst cases and sanity checks of those runs' records "
                     "are this code's, their numbers the evaluation commits'")
    return lines


def _run_section(preset: Preset, command: str, device: torch.device, jobs: int, state, out: Path) -> list[str]:
    commit, dirty = git_state(Path(__file__).parent)
    current = state.current
    finished = sum(1 for i in state.invocations if i.get("finished"))
    phases = ", ".join(f"{k} {v:.0f} s" for k, v in current["phases"].items())
    load = {key: ", ".join(map(str, current.get(key) or [])) or "n/a" for key in ("load_start", "load_end")}
    lines = ["## Run", "", f"* **Command:** `{command}`",
             f"* **Commit:** `{commit or 'unknown (not a git checkout)'}`"
             + (" (with uncommitted code changes)" if dirty else "")
             + " — the code of this invocation, which wrote the tables, figures and this README",
             *provenance(out, state),
             *[f"* **Machine of this invocation:** {line}" if i == 0 else f"  {line}" for i, line in enumerate(machine(device, jobs))],
             f"* **Wall time:** {state.total_wall_seconds:.0f} s over {len(state.invocations)} invocation(s), "
             f"{finished} of which ran to the end; the last one took {current['wall_seconds']:.0f} s ({phases})",
             f"* **Load average** (1, 5, 15 min) at start: {load['load_start']}; at end: {load['load_end']}"]
    return lines + ([f"* **Expected time:** {preset.expected_time}"] if preset.expected_time else [])


def _what_ran_section(preset: Preset, manifest: list[dict], grids: dict, runs=()) -> list[str]:
    plan = preset.eval
    models = list(dict.fromkeys(run.model for run in runs))
    solver = plan.grad_solver or "the deployed solver and an RK4 unroll"
    return ["## What ran", "",
            f"Evaluation: {plan.n_samples} test samples (a fixed permutation), batch {plan.batch_size}, "
            f"seed {plan.seed}, gradients through {solver}; transfer source: {transfer_source(plan) or 'none'}.", "",
            *_table(["attack", "severities"],
                    [[f"`{s}`", severities(s, g.eps, grids, models)] for g in plan.groups for s in g.attacks]), "",
            *_certify_lines(preset, runs),
            *_table(["checkpoint", "epochs", "test acc", "sha256", "role"],
                    [[e["path"], e["epochs"], f"{e['test_acc']:.4f}", e["sha256"][:12], e["role"]]
                     for e in manifest])]


def _certify_lines(preset: Preset, runs) -> list[str]:
    """The certificates run after the attacks (docs/certify.md), as a table, then a blank line."""
    if not preset.certify:
        return []
    trained = sorted({run.seed for run in runs})
    rows = []
    for c in preset.certify:
        settings = ", ".join(f"{k} {v:g}" for k, v in c.settings) or "defaults"
        radii = ", ".join(f"{r:g}" for r in c.radii) if c.radii else "the dataset's default radii"
        n = c.n_samples or preset.eval.n_samples
        where = ("every checkpoint" if c.seeds is None or not set(trained) - set(c.seeds)
                 else f"training seed(s) {', '.join(map(str, c.seeds))} only")
        if c.method == "lyapunov":
            where += ", models whose checkpoint qualifies (an input-convex Lyapunov classifier; the others skipped)"
        rows.append([f"`{c.method}`", settings, radii, f"first {n} of the evaluated examples", where])
    return [*_table(["certify", "settings", "L2 radii", "examples", "checkpoints"], rows), ""]


def _group_tables(out: Path) -> list[str]:
    """The perturbation groups (class trait `group`) whose table the report phase wrote."""
    groups = sorted({cls.group for _, cls in PERTURBATIONS.items() if cls.group})
    return [g for g in groups if (out / "tables" / f"{g}.md").is_file()]


def _outputs_section(out: Path, figures: list[Path], roa_lines: list[str]) -> list[str]:
    plots = [p for p in figures if p.suffix == ".png" and not p.name.startswith("roa-")]
    return ["## Outputs", "",
            f"* `records.jsonl`, `records.csv`, `outcomes/`: the results store (`zubov-bench table/plot --results "
            f"{out}` re-read it)",
            "* `tables/results.{md,tex,csv}`: every perturbation at every severity; "
            "`tables/worst-case.{md,tex,csv}`: the worst case beside each attack"
            + ("; `tables/alignment.{md,tex,csv}`: whether the Lyapunov functions are Lyapunov functions "
               "of the flow (`zubov-bench table --alignment`)" if (out / "tables" / "alignment.md").is_file() else "")
            + "".join(f"; `tables/{g}.{{md,tex,csv}}`: each of the {g}, mean over its severities "
                      f"(`zubov-bench table --group {g}`)" for g in _group_tables(out)),
            "* `checkpoints/manifest.json`: name, model, dataset, config, sha256 and test accuracy per checkpoint",
            *[f"* `{p.relative_to(out)}` (+ .pdf)" for p in plots], *roa_lines]


def render_readme(*, preset: Preset, out: Path, command: str, device: torch.device, jobs: int, state,
                  manifest: list[dict], runs, dataset_grids: dict, figures: list[Path],
                  roa_lines: list[str]) -> str:
    reduced = [f"* {line}" for line in reductions(preset, runs, dataset_grids)] or ["* nothing"]
    kind, tool = ("Study", "sweep") if preset.variants else ("Reproduce preset", "reproduce")
    lines = [f"# {kind} `{preset.name}`", "", preset.description, "",
             f"Generated by `zubov-bench {tool}`; do not edit by hand.", "",
             *_run_section(preset, command, device, jobs, state, out), "",
             *_what_ran_section(preset, manifest, dataset_grids, runs), "",
             "## Reduced versus the full protocol", "", *reduced, "",
             *_outputs_section(out, figures, roa_lines)]
    table = out / "tables" / "results.md"
    if table.is_file():
        lines += ["", "## Results", "", table.read_text().rstrip()]
    for group in _group_tables(out):
        lines += ["", f"## {group.capitalize()}", "", (out / "tables" / f"{group}.md").read_text().rstrip()]
    alignment = out / "tables" / "alignment.md"
    if alignment.is_file():
        lines += ["", "## Lyapunov alignment", "", alignment.read_text().rstrip()]
    return "\n".join(lines) + "\n"


def write_readme(path: Path, **kwargs) -> Path:
    write_text(path, render_readme(**kwargs))
    return path
