"""The perturbation registry: `@register_perturbation(name)`, `create_perturbation(name, **params)`.

Every module of this package is imported on first use, so adding a perturbation touches one file.
A perturbation from outside this repository registers through an entry point in the group
`zubov_bench.perturbations` (`name = "module"`: importing the module registers it), as models do.
What the rest of the suite needs to know about a perturbation is a trait of its class
(`Perturbation` in base.py), never its name.
"""
from __future__ import annotations

import importlib
import pkgutil
import warnings
from importlib.metadata import entry_points

from ..registry import Registry

ENTRY_POINT_GROUP = "zubov_bench.perturbations"


def _load_all() -> None:
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            ep.load()
        except Exception as exc:  # a broken third-party plugin must not break the suite
            warnings.warn(f"perturbation plugin {ep.name!r} failed to load: {exc}")


PERTURBATIONS: Registry = Registry("perturbation", loader=_load_all)


def register_perturbation(name: str):
    """Class decorator: register a Perturbation subclass under `name`."""
    return PERTURBATIONS.class_decorator(name, "name")


def create_perturbation(name: str, **params):
    return PERTURBATIONS.get(name)(**params)


def list_perturbations() -> list[tuple[str, str]]:
    return [(name, cls.description) for name, cls in PERTURBATIONS.items()]


def group_members(name: str) -> list[str]:
    """The registered perturbations whose class declares `group == name` (e.g. "corruptions",
    which `eval --attack` accepts like a name); [] when no class does."""
    return [n for n, cls in PERTURBATIONS.items() if cls.group and cls.group == name]
