"""timm-style model registry: `@register_model(name)` and `create_model(name, spec, **cfg)`.

Models come from three places: this package, the `baselines` package, and any installed
package that declares an entry point in the group `zubov_bench.models`.
"""
from __future__ import annotations

import importlib
import warnings
from importlib.metadata import entry_points

from ..data.base import DataSpec
from ..registry import Registry

ENTRY_POINT_GROUP = "zubov_bench.models"


def _load_all() -> None:
    importlib.import_module("zubov_bench.models.zubov")
    importlib.import_module("zubov_bench.models.node")
    try:
        importlib.import_module("baselines")
    except ModuleNotFoundError as exc:
        if exc.name != "baselines":
            raise
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the suite
            warnings.warn(f"model plugin {ep.name!r} failed to load: {exc}")


MODELS: Registry = Registry("model", loader=_load_all)


def register_model(name: str):
    """Class decorator: register a BenchModel subclass under `name`."""
    return MODELS.class_decorator(name, "registry_name")


def create_model(name: str, spec: DataSpec, **cfg):
    from .base import make_config

    cls = MODELS.get(name)
    return cls(spec, make_config(cls.Config, cfg))


def list_models() -> list[tuple[str, str]]:
    return [(name, cls.description) for name, cls in MODELS.items()]
