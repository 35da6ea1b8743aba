"""The training phase of `reproduce`: one run folder per (model, dataset, seed), resumable.

A finished run (model.pt + summary.json) is skipped; a run with a `last.pt` but no final
checkpoint is resumed with `resume_run`; anything else is trained from scratch. A folder that
holds a run with a different config is never reused silently.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable

import yaml

from ..errors import UserError
from ..io import write_json
from ..training import resolve_run_config, resume_run, train_run
from ..training.run import RESOLVED_CONFIG
from ..training.trainer import MODEL_FILE, STATE_FILE

SUMMARY = "summary.json"
MANIFEST = "manifest.json"
PLAN_FILE = "reproduce-plan.json"  # the resolved config this preset asked for


@dataclass
class RunPlan:
    model: str
    dataset: str
    seed: int
    resolved: dict  # {model, dataset, train, model_config} as resolve_run_config returns it
    run_dir: Path
    evaluate: bool = True  # False: trained only as the transfer source or for a figure
    role: str = "evaluated"
    label: str = ""  # the sweep variant's label (the method name in tables); "" = the model name

    @property
    def name(self) -> str:
        return self.run_dir.name

    @property
    def method(self) -> str:
        return self.label or self.model

    @property
    def checkpoint(self) -> Path:
        return self.run_dir / MODEL_FILE


def plan_run(model: str, dataset: str, seed: int, train: dict, model_config: dict, root: Path,
             evaluate: bool = True, role: str = "evaluated", label: str = "") -> RunPlan:
    resolved = resolve_run_config(model, dataset, None, {**train, "seed": seed}, dict(model_config))
    label = "" if label == model else label
    if label:
        resolved["method"] = label
    return RunPlan(model, dataset, seed, resolved, root / f"{label or model}-{dataset}-s{seed}", evaluate, role,
                   label)


def _plain(value):
    """JSON round trip, so that in-memory and stored plans compare alike (tuples as lists)."""
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def _effective(resolved: dict) -> dict:
    """The plan with its model config filled in with the model's defaults, so that a setting
    spelled out at its default value (as a study pins one) compares equal to leaving it out."""
    from ..models.base import make_config
    from ..models.registry import MODELS

    cls = MODELS.get(resolved["model"])
    full = asdict(make_config(cls.Config, dict(resolved.get("model_config") or {})))
    return _plain({**resolved, "model_config": full})


def config_mismatch(plan: RunPlan) -> str | None:
    """The first setting where the folder's recorded plan differs from this one, or None."""
    path = plan.run_dir / PLAN_FILE
    if not path.is_file():
        return f"no {PLAN_FILE}: the run was not started by reproduce"
    stored = _effective(json.loads(path.read_text()))
    want = _effective(plan.resolved)
    for section in ("model", "dataset", "train", "model_config"):
        if stored.get(section) != want[section]:
            if isinstance(want[section], dict) and isinstance(stored.get(section), dict):
                key = next(k for k in sorted(set(want[section]) | set(stored[section]))
                           if want[section].get(k) != stored[section].get(k))
                return f"{section}.{key}: {stored[section].get(key)!r} != {want[section].get(key)!r}"
            return f"{section}: {stored.get(section)!r} != {want[section]!r}"
    return None


def run_state(plan: RunPlan) -> str:
    """'done', 'resume' or 'fresh' (raises a UserError for a folder holding another run)."""
    folder = plan.run_dir
    if not (folder / RESOLVED_CONFIG).is_file() and not (folder / PLAN_FILE).is_file():
        leftovers = [f for f in (MODEL_FILE, STATE_FILE) if (folder / f).exists()]
        if leftovers:
            raise UserError(f"{folder} holds {leftovers[0]} but no {RESOLVED_CONFIG}; it is not a run "
                            "folder of this preset: move it away or choose another --out")
        return "fresh"
    mismatch = config_mismatch(plan)
    if mismatch:
        raise UserError(f"{folder} holds a run with a different config ({mismatch}); delete that folder "
                        "to retrain it with this preset, or choose another --out")
    if (folder / MODEL_FILE).is_file() and (folder / SUMMARY).is_file():
        return "done"
    return "resume" if (folder / STATE_FILE).is_file() and (folder / RESOLVED_CONFIG).is_file() else "fresh"


def ensure_trained(plan: RunPlan, *, data_root=None, download=False, device="auto", progress=True,
                   log: Callable[[str], None] = print) -> tuple[str, dict]:
    """Train, resume or skip one run; returns (what happened, the run's summary)."""
    state = run_state(plan)
    if state == "done":
        return "skipped", read_summary(plan)
    common = dict(data_root=data_root, download=download, device=device, progress=progress)
    recorded = read_summary(plan)["sha256"] if finished_once(plan) else None
    if recorded:  # e.g. a committed store that keeps a run's summary but not its weights
        log(f"  {plan.name}: its folder records a finished training (sha256 {recorded[:12]}) but not its "
            "weights: training it again")
    if state == "resume":
        log(f"  resuming {plan.run_dir} from its last checkpoint")
        what, summary = "resumed", resume_run(plan.run_dir, **common)
    else:
        write_json(plan.run_dir / PLAN_FILE, _plain(plan.resolved))
        what, summary = "trained", train_run(plan.resolved, plan.run_dir, force=True, **common)
    if recorded:
        log(f"  {plan.name}: " + ("trained again to the recorded weights" if summary["sha256"] == recorded else
                                  f"the new weights differ from the recorded ones ({recorded[:12]} -> "
                                  f"{summary['sha256'][:12]}); the records of the earlier training are replaced"))
    return what, summary


def finished_once(plan: RunPlan) -> bool:
    """Its folder records a finished training (its weights may have been left out since)."""
    return (plan.run_dir / SUMMARY).is_file() and (plan.run_dir / RESOLVED_CONFIG).is_file()


def read_summary(plan: RunPlan) -> dict:
    return json.loads((plan.run_dir / SUMMARY).read_text())


def manifest_entry(plan: RunPlan, summary: dict, relative_to: Path) -> dict:
    stored = yaml.safe_load((plan.run_dir / RESOLVED_CONFIG).read_text())
    return {
        "name": plan.name, "method": plan.method, "model": plan.model, "dataset": plan.dataset, "seed": plan.seed,
        "path": str(plan.checkpoint.relative_to(relative_to)), "sha256": summary["sha256"],
        "test_acc": summary["test_acc"], "epochs": summary["epochs"],
        "train_seconds": summary.get("train_seconds"), "role": plan.role,
        "config": {"train": stored.get("train", {}), "model_config": stored.get("model_config", {})},
    }


def write_manifest(folder: Path, entries: list[dict]) -> Path:
    path = folder / MANIFEST
    write_json(path, {"checkpoints": sorted(entries, key=lambda e: e["name"])})
    return path
