"""Per-dataset (and per-model) defaults, so `train --model M --dataset D` needs no other flag.

Order of precedence: these presets < the --config file < command-line flags.
"""
from __future__ import annotations

import copy

from .config import TrainConfig

# Each model's recipes live on its class, beside @register_model (Zubov-Net's, with its mechanism
# sets, in models/zubov.py); the sets stay importable from here, where the docs cite them.
from .models.zubov import ZUBOV_ALIGNED, ZUBOV_SPEC  # noqa: F401

# The train keys a preset resolves (and a run's config.yaml stores); their defaults are TrainConfig's
PRESET_TRAIN_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "seed", "schedule", "grad_clip",
                     "save_every_steps", "eval_batch_size")
TRAIN_DEFAULTS = {key: getattr(TrainConfig, key) for key in PRESET_TRAIN_KEYS}

DATASET_PRESETS = {
    "digits": {"train": {"epochs": 20, "batch_size": 64, "lr": 3e-3}, "model": {}},
    "toy2d": {"train": {"epochs": 60, "batch_size": 64, "lr": 5e-3}, "model": {"d": 2}},
    "mnist-5k": {"train": {"epochs": 20, "batch_size": 64, "lr": 2e-3}, "model": {}},
    "fashion-mnist": {"train": {"epochs": 6, "batch_size": 128, "lr": 2e-3}, "model": {}},  # the reproduce budget
    "mnist": {"train": {"epochs": 5, "batch_size": 128, "lr": 2e-3}, "model": {}},
    "cifar10": {"train": {"epochs": 60, "batch_size": 128, "lr": 1e-3}, "model": {"d": 128}},
    "svhn": {"train": {"epochs": 30, "batch_size": 128, "lr": 1e-3}, "model": {"d": 128}},
}

# (model, dataset) -> overrides registered with register_preset; "*" matches every dataset
MODEL_PRESETS: dict[tuple[str, str], dict] = {}


def _merge(dst: dict, src: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, dict):
            _merge(dst.setdefault(key, {}), value)
        else:
            dst[key] = value
    return dst


# On a CUDA device a step of these models at batch 128 is launch-bound (kernel launches, not
# arithmetic, are its time: bench/RESULTS.md), so `train` on CUDA multiplies the preset's batch size by
# this factor, and its learning rate by the factor's square root (Adam's usual scaling), for the
# datasets big enough to keep many steps per epoch; --batch-size and --lr still win. Not applied
# by `reproduce`, whose presets are the committed protocol. 2, not 4: node on FashionMNIST (4
# epochs, trained on a CPU) reached 90.8% test accuracy at batch 256 against 91.1% at 128, but
# 88.9% at 512 (docs/performance.md).
CUDA_BATCH_SCALE = {"fashion-mnist": 2, "mnist": 2, "cifar10": 2, "svhn": 2}


def cuda_train_preset(dataset: str, train: dict) -> dict:
    """The preset's training values that change on a CUDA device (batch size and learning rate)."""
    scale = CUDA_BATCH_SCALE.get(dataset, 1)
    if scale == 1:
        return {}
    return {"batch_size": int(train["batch_size"]) * scale, "lr": float(train["lr"]) * scale ** 0.5}


def register_preset(model: str, dataset: str, overrides: dict) -> None:
    """A recipe for a model defined elsewhere (a plugin may call this when imported). A model's
    own recipes belong on its class, as `recipes` beside @register_model (models/base.py)."""
    MODEL_PRESETS[(model, dataset)] = overrides


def resolve_preset(model: str, dataset: str) -> dict:
    """TRAIN_DEFAULTS < the dataset preset < the model class's recipes ("*" < dataset) < recipes
    registered with register_preset ("*" < dataset)."""
    from .models.registry import model_recipes  # loads every model first (their modules may register_preset)

    out = {"train": dict(TRAIN_DEFAULTS), "model": {}}
    _merge(out, copy.deepcopy(DATASET_PRESETS.get(dataset, {})))
    for recipe in model_recipes(model, dataset):
        _merge(out, copy.deepcopy(recipe))
    for key in ((model, "*"), (model, dataset)):
        _merge(out, copy.deepcopy(MODEL_PRESETS.get(key, {})))
    return out
