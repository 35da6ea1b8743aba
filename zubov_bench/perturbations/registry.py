"""The perturbation registry: `@register_perturbation(name)`, `create_perturbation(name, **params)`.

Every module of this package is imported on first use, so adding a perturbation touches one file.
"""
from __future__ import annotations

import importlib
import pkgutil

from ..registry import Registry


def _load_all() -> None:
    package = importlib.import_module(__package__)
    for module in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{__package__}.{module.name}")


PERTURBATIONS: Registry = Registry("perturbation", loader=_load_all)


def register_perturbation(name: str):
    """Class decorator: register a Perturbation subclass under `name`."""
    return PERTURBATIONS.class_decorator(name, "name")


def create_perturbation(name: str, **params):
    return PERTURBATIONS.get(name)(**params)


def list_perturbations() -> list[tuple[str, str]]:
    return [(name, cls.description) for name, cls in PERTURBATIONS.items()]
