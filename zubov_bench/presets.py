"""Per-dataset (and per-model) defaults, so `train --model M --dataset D` needs no other flag.

Order of precedence: these presets < the --config file < command-line flags.
"""
from __future__ import annotations

import copy

TRAIN_DEFAULTS = {
    "epochs": 10, "batch_size": 128, "lr": 1e-3, "weight_decay": 0.0, "seed": 0,
    "schedule": "cosine", "grad_clip": 0.0, "save_every_steps": 0, "eval_batch_size": 1000,
}

DATASET_PRESETS = {
    "digits": {"train": {"epochs": 20, "batch_size": 64, "lr": 3e-3}, "model": {}},
    "toy2d": {"train": {"epochs": 60, "batch_size": 64, "lr": 5e-3}, "model": {"d": 2}},
    "mnist-5k": {"train": {"epochs": 20, "batch_size": 64, "lr": 2e-3}, "model": {}},
    "fashion-mnist": {"train": {"epochs": 5, "batch_size": 128, "lr": 2e-3}, "model": {}},
    "mnist": {"train": {"epochs": 5, "batch_size": 128, "lr": 2e-3}, "model": {}},
    "cifar10": {"train": {"epochs": 60, "batch_size": 128, "lr": 1e-3}, "model": {"d": 128}},
    "svhn": {"train": {"epochs": 30, "batch_size": 128, "lr": 1e-3}, "model": {"d": 128}},
}

# Zubov-Net's mechanism as measured to work (docs/zubov-net.md, "What changed and why"): the
# Lyapunov decrease V' <= -alpha V as a hinge normalised by V (the spec's e^-V residual vanished
# at the data and near e_k), the Bregman form (no flat half-neighbourhood at e_k), a field with
# f(e_k) = 0 by construction and a stable-Jacobian hinge (a free field met f(e_k) = 0 with a zero
# Jacobian), consistency points inside each PRoA and along their flow, outer shells that the flow
# must not enter, the data's z(T) inside its PRoA, and equilibria far enough apart (r = 5) that ten
# PRoAs do not meet at the simplex's centre, where the flow had a spurious attractor.
ZUBOV_ALIGNED = {
    "residual": "hinge", "decrease": "lyapunov", "alpha": 1.0, "lyap_form": "bregman", "lyap_quad": 0.1,
    "field_act": "tanh", "field_anchor": 0.25, "field_damping": 1.0, "lambda_eq": 10.0,
    "lambda_jac": 1.0, "jac_margin": 0.5, "interior_points": 1, "interior_flow": True,
    "outer_shell": "hold", "separation_at": "z0+zT", "r": 5.0,
}
# The spec's reconstruction (docs/zubov-net.md §2) for the same keys: the committed
# results/fashion-mnist were trained with it, and it stays selectable as an ablation.
ZUBOV_SPEC = {
    "residual": "zubov", "decrease": "quadratic", "alpha": 0.1, "lyap_form": "rehu", "lyap_quad": 0.01,
    "field_act": "softplus", "field_anchor": 0.0, "field_damping": 0.0, "lambda_eq": 1.0,
    "lambda_jac": 0.0, "jac_margin": 0.1, "interior_points": 0, "interior_flow": False,
    "outer_shell": "decrease", "separation_at": "z0", "r": 3.0,
}

# (model, dataset) -> overrides; "*" matches every dataset
MODEL_PRESETS: dict[tuple[str, str], dict] = {
    ("zubov", "*"): {"model": dict(ZUBOV_ALIGNED)},
    # toy2d: interleaved arcs are not convexly separable in input space, so a learned 2-D stem; the
    # three equilibria are close (r = 1), where the slower decrease, two interior points per ray and
    # a free field measured best (docs/zubov-net.md)
    ("zubov", "toy2d"): {"model": {"stem": "mlp", "r": 1.0, "eq_radius": 0.2, "lyap_quad": 0.05, "T": 2.0,
                                   "alpha": 0.3, "interior_points": 2, "interior_flow": False,
                                   "field_anchor": 0.0, "field_damping": 0.0}},
    # digits: PGD adversarial training at L-inf 0.1 was the study's best trade-off (results/zubov-study/
    # README.md, measured with the spec's mechanism)
    ("zubov", "digits"): {"train": {"adv_eps": 0.1}},
    # fashion-mnist: still the spec's mechanism with lambda_sep = 0, the configuration behind the
    # committed results/fashion-mnist, until that grid is re-run with the aligned mechanism (its
    # equilibria are unstable and its data sit far outside their PRoAs: docs/zubov-net.md)
    ("zubov", "fashion-mnist"): {"model": {**ZUBOV_SPEC, "boundary_rays": 8, "traj_points": 2,
                                           "lyap_width": 64, "lambda_sep": 0.0}},
}


def _merge(dst: dict, src: dict) -> dict:
    for key, value in src.items():
        if isinstance(value, dict):
            _merge(dst.setdefault(key, {}), value)
        else:
            dst[key] = value
    return dst


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
