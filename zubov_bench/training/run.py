"""One training run: resolve presets + config file + flags, build model and data, train."""
from __future__ import annotations

import dataclasses
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
import yaml

from ..config import build_dataclass, flatten_dotted, load_config_file
from ..data import load_dataset
from ..errors import UserError
from ..io import ensure_writable_dir, reporting_write_faults, write_json, write_text
from ..models import MODELS, create_model, make_config
from ..presets import cuda_train_preset, resolve_preset
from ..device import resolve_device
from . import distributed
from .trainer import MODEL_FILE, STATE_FILE, Trainer, TrainConfig, environment

RESOLVED_CONFIG = "config.yaml"
RUN_ENVIRONMENT = "env.json"  # written beside RESOLVED_CONFIG when a run starts


def resolve_run_config(model: str | None, dataset: str | None, config_file: str | None,
                       train_overrides: dict, model_overrides: dict, device: str | None = None) -> dict:
    """Presets < config file < flags. Returns {model, dataset, train, model_config}.

    With a CUDA `device` and no batch size given, the preset's batch size and learning rate are
    scaled up (presets.CUDA_BATCH_SCALE); a learning rate given still wins."""
    file_cfg = load_config_file(config_file) if config_file else {}
    model = model or file_cfg.get("model")
    dataset = dataset or file_cfg.get("dataset") or "digits"
    if not model:
        raise UserError("no model given: pass --model NAME (see `zubov-bench list models`)")
    preset = resolve_preset(model, dataset)
    explicit = {**file_cfg.get("train", {}), **{k: v for k, v in train_overrides.items() if v is not None}}
    if device is not None and "batch_size" not in explicit and resolve_device(device).type == "cuda":
        preset["train"].update(cuda_train_preset(dataset, preset["train"]))
    train = {**preset["train"], **explicit}
    # dotted keys (lyapunov.form) become the flat fields they name per source, so precedence holds
    config_cls = getattr(MODELS.get(model), "Config", None)
    nested = getattr(config_cls, "nested", {})
    model_cfg = {}
    for source in (preset["model"], file_cfg.get("model_config", {}), model_overrides):
        model_cfg.update(flatten_dotted(source, nested, model))
    if config_cls is not None:
        make_config(config_cls, model_cfg)  # an unknown key or bad value fails here, before any work starts
    training_settings(train)  # likewise for the training settings, so a plan fails before its first run
    resolved = {"model": model, "dataset": dataset, "train": train, "model_config": model_cfg}
    if file_cfg.get("method"):
        resolved["method"] = str(file_cfg["method"])
    return resolved


def training_settings(train: dict) -> TrainConfig:
    """The TrainConfig a resolved `train` section asks for; a one-line UserError for an unknown
    key or a bad value."""
    defaults = asdict(TrainConfig())
    for key, value in train.items():  # coerce() would read `epochs: true` as 1 epoch
        if isinstance(value, bool) and key in defaults and not isinstance(defaults[key], bool):
            raise UserError(f"training key {key}: expected a number, got {str(value).lower()}")
    settings = build_dataclass(TrainConfig, train, "training")
    settings.validate()
    return settings


def settings_a_run_config_leaves_open(config_file: str | Path, resolved: dict) -> dict[str, object]:
    """The settings that `config_file`, a run folder's config.yaml, does not name, with the values
    `resolved` (resolve_run_config's answer for it) gives them ({"train.KEY" or "model_config.KEY":
    value}); empty for any other config file.

    `train` writes every setting its code has into the run's config.yaml, so that file pins the run.
    A setting the code gained later is missing from an older run's file and takes today's default
    or recipe value, so training again from the file may give another model."""
    path = Path(config_file)
    if path.name != RESOLVED_CONFIG or not (path.parent / RUN_ENVIRONMENT).is_file():
        return {}
    written = load_config_file(path)
    config_cls = getattr(MODELS.get(resolved["model"]), "Config", None)
    today = {"train": asdict(training_settings(resolved["train"])),
             "model_config": asdict(make_config(config_cls, resolved["model_config"])) if config_cls else {}}
    today["train"].pop("progress", None)
    return {f"{section}.{key}": value for section, values in today.items()
            for key, value in sorted(values.items()) if key not in written.get(section, {})}


def default_run_dir(resolved: dict) -> Path:
    return Path("checkpoints") / f"{resolved['model']}-{resolved['dataset']}-s{resolved['train']['seed']}"


def _check_fresh(run_dir: Path, force: bool) -> None:
    existing = [f for f in (MODEL_FILE, STATE_FILE) if (run_dir / f).exists()]
    if existing and not force:
        raise UserError(f"{run_dir} already holds a run ({existing[0]}); pass --resume {run_dir} to "
                        "continue it, --force to overwrite it, or --out for a new folder")


def build_trainer(resolved: dict, run_dir: Path, data_root=None, download=False,
                  device="auto", progress=True) -> Trainer:
    tcfg = dataclasses.replace(training_settings(resolved["train"]), device=device, progress=progress)
    dev = resolve_device(device)
    with distributed.main_first():  # one download or unpacking, not one per rank
        data = load_dataset(resolved["dataset"], data_root, download)
    torch.manual_seed(tcfg.seed)
    model = create_model(resolved["model"], data.spec, **resolved["model_config"])
    info = {"model": resolved["model"], "dataset": resolved["dataset"], "seed": tcfg.seed}
    if resolved.get("method"):  # the row label in tables, e.g. one ablation of a model
        info["method"] = resolved["method"]
    trainer = Trainer(model, data, tcfg, run_dir, info)
    trainer.device = distributed.rank_device(dev)
    return trainer


def train_run(resolved: dict, run_dir: Path | None = None, *, data_root=None, download=False,
              device="auto", progress=True, force=False) -> dict:
    """Train from scratch; under torchrun every rank trains and only rank 0 writes the folder.

    Over an existing run (--force) the new run trains in a staging folder beside it and replaces
    it only once complete, so a failure (a full disk, Ctrl-C) leaves the old result as it was.
    """
    run_dir = Path(run_dir or default_run_dir(resolved))
    _check_name_lengths(run_dir)
    with distributed.process_group(resolve_device(device)):
        _check_fresh(run_dir, force)
        replacing = force and any((run_dir / f).exists() for f in (MODEL_FILE, STATE_FILE))
        work_dir = _staging_dir(run_dir) if replacing else run_dir
        trainer = build_trainer(resolved, work_dir, data_root, download, device, progress)
        distributed.barrier()  # every rank has checked the folder before rank 0 clears it
        if distributed.is_main():
            if replacing:
                shutil.rmtree(work_dir, ignore_errors=True)  # left by an interrupted --force run
            _start_run_dir(work_dir, resolved, trainer, device)
        summary = trainer.fit()
        if replacing and distributed.is_main():
            _swap_in(work_dir, run_dir)
        return summary


def _staging_dir(run_dir: Path) -> Path:
    return run_dir.parent / f".{run_dir.name[:200]}.new"


def _swap_in(new: Path, run_dir: Path) -> None:
    """Replace `run_dir` by the complete `new` folder: two renames, the old one removed last."""
    old = run_dir.parent / f".{run_dir.name[:200]}.old"
    with reporting_write_faults(run_dir):
        shutil.rmtree(old, ignore_errors=True)
        os.replace(run_dir, old)
        os.replace(new, run_dir)
        shutil.rmtree(old, ignore_errors=True)


def _check_name_lengths(run_dir: Path) -> None:
    """A folder name the file system cannot hold, as one line before any work."""
    too_long = [part for part in run_dir.parts if len(os.fsencode(part)) > 255]
    if too_long:
        raise UserError(f"output folder {run_dir}: the name {too_long[0][:40]}... is "
                        f"{len(os.fsencode(too_long[0]))} bytes; file systems allow 255")


def _start_run_dir(run_dir: Path, resolved: dict, trainer: Trainer, device: str) -> None:
    ensure_writable_dir(run_dir)
    full = {**resolved, "train": asdict(trainer.cfg) | {"device": device},
            "model_config": trainer.model.config_dict()}
    full["train"].pop("progress")
    write_text(run_dir / RESOLVED_CONFIG, yaml.safe_dump(_plain(full), sort_keys=False))
    write_json(run_dir / RUN_ENVIRONMENT, environment(trainer.device) | {"world_size": distributed.world_size()})
    for stale in (STATE_FILE, MODEL_FILE, "metrics.csv", "summary.json"):
        (run_dir / stale).unlink(missing_ok=True)


def resume_run(run_dir: Path, *, expect: dict | None = None, data_root=None, download=False, device=None,
               progress=True) -> dict:
    """Continue `run_dir` from its last checkpoint; `expect` ({"dataset": ...}) must match the stored run."""
    run_dir = Path(run_dir)
    cfg_path = run_dir / RESOLVED_CONFIG
    if not cfg_path.is_file():
        raise UserError(f"{run_dir} is not a training run folder (no {RESOLVED_CONFIG})")
    resolved = load_run_config(cfg_path)
    for key, value in (expect or {}).items():
        if value is not None and value != resolved.get(key):
            raise UserError(f"--{key} {value} does not match the run in {run_dir}, "
                            f"which trains {key} {resolved.get(key)}")
    device = device or resolved["train"].get("device", "auto")
    with distributed.process_group(resolve_device(device)):
        trainer = build_trainer(resolved, run_dir, data_root, download, device, progress)
        trainer.model.to(trainer.device)
        trainer.resume()  # every rank reads rank 0's last.pt
        if trainer.progress.epoch >= trainer.cfg.epochs:
            return trainer.finish()
        return trainer.fit()


STORED_KEYS = ("model", "dataset", "train", "model_config", "method")


def load_run_config(path: Path) -> dict:
    """A run folder's resolved config, as `_start_run_dir` wrote it: not a user config file, so it
    may hold what the run was given besides the file (its --label, a sweep variant's name: method)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is damaged ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict) or any(not isinstance(data.get(k), dict) for k in ("train", "model_config")) \
            or any(not isinstance(data.get(k), str) for k in ("model", "dataset")):
        raise UserError(f"{path} is not a resolved run config (model, dataset, train, model_config)")
    unknown = sorted(set(data) - set(STORED_KEYS))
    if unknown:
        raise UserError(f"{path}: unknown key(s) {', '.join(unknown)}")
    return data


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
