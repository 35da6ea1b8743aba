"""timm-style model registry: `@register_model(name)` and `create_model(name, spec, **cfg)`.

Models come from this package and from every installed distribution that declares an entry point
in the group `zubov_bench.models` (`name = "module"`: importing the module registers it). The
built-in baselines are such entry points of zubov-bench itself (pyproject.toml), so this package
never imports the `baselines` package. A model class carries its own per-dataset `recipes`
(timm keeps default configs beside its models) and, if it declares `has_lyapunov`, the
`LyapunovModel` methods; both are checked here, at registration.
"""
from __future__ import annotations

import dataclasses
import importlib
import warnings
from importlib.metadata import entry_points

from ..data.base import DataSpec
from ..registry import Registry

ENTRY_POINT_GROUP = "zubov_bench.models"
DISTRIBUTION = "zubov-bench"
BUILTIN_MODULES = ("zubov_bench.models.zubov", "zubov_bench.models.node")
RECIPE_SECTIONS = {"train", "model"}


def _load_all() -> None:
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    found = entry_points(group=ENTRY_POINT_GROUP)
    if not any(ep.dist is not None and ep.dist.name.replace("_", "-").lower() == DISTRIBUTION for ep in found):
        # metadata from before the baselines became entry points (a stale *.egg-info or install)
        warnings.warn(f"the installed {DISTRIBUTION} metadata declares none of its built-in baselines "
                      f"({ENTRY_POINT_GROUP} entry points): reinstall it with `pip install -e .`")
    for ep in found:
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the suite
            warnings.warn(f"model plugin {ep.name!r} failed to load: {exc}")


MODELS: Registry = Registry("model", loader=_load_all)


def check_recipes(cls) -> None:
    """`recipes` maps a dataset name (or "*" for every dataset) to {"train": {...}, "model": {...}}."""
    recipes = cls.__dict__.get("recipes", {})
    if not isinstance(recipes, dict):
        raise TypeError(f"{cls.__name__}.recipes must be a dict, got {type(recipes).__name__}")
    for dataset, recipe in recipes.items():
        if not isinstance(dataset, str) or not isinstance(recipe, dict) or \
                not set(recipe) <= RECIPE_SECTIONS or not all(isinstance(v, dict) for v in recipe.values()):
            raise TypeError(f"{cls.__name__}.recipes[{dataset!r}] must be {{'train': {{...}}, 'model': {{...}}}}")
        config_keys = {f.name for f in dataclasses.fields(cls.Config)}
        unknown = sorted(set(recipe.get("model", {})) - config_keys)
        if unknown:  # a typo would otherwise surface only when someone trains on that dataset
            raise TypeError(f"{cls.__name__}.recipes[{dataset!r}]: {', '.join(unknown)} not in "
                            f"{cls.Config.__name__}")


def register_model(name: str):
    """Class decorator: register a BenchModel subclass under `name`.

    Fails loudly (TypeError) on malformed `recipes` and on a class that declares Lyapunov
    structure (`has_lyapunov = True`) without every method of `LyapunovModel`.
    """
    add = MODELS.class_decorator(name, "registry_name")

    def check_and_add(cls):
        from .protocols import check_lyapunov_model

        check_recipes(cls)
        check_lyapunov_model(cls)
        return add(cls)

    return check_and_add


def model_recipes(name: str, dataset: str) -> list[dict]:
    """The model's own recipes for `dataset`, weakest first ("*" < the dataset); [] for an
    unknown model (the caller reports it)."""
    if name not in MODELS:
        return []
    recipes = MODELS.get(name).__dict__.get("recipes", {})  # a subclass does not inherit them
    return [recipes[key] for key in ("*", dataset) if key in recipes]


def create_model(name: str, spec: DataSpec, **cfg):
    from .base import make_config

    cls = MODELS.get(name)
    model = cls(spec, make_config(cls.Config, cfg))
    budget = getattr(model.cfg, "stem_lipschitz", 0.0)
    if budget:  # here, not in every model's __init__: each builds its stem its own way
        from .lipschitz import bound_stem

        bound_stem(model, budget)
    return model


def list_models() -> list[tuple[str, str]]:
    return [(name, cls.description) for name, cls in MODELS.items()]

