"""Typed perturbation parameters: a dataclass per perturbation, filled from CLI/YAML values."""
from __future__ import annotations

import dataclasses
import typing
from typing import Any

from ..config import coerce  # the one coercion of typed settings
from ..errors import UserError


def build_params(params_cls: type, values: dict[str, Any], owner: str):
    """An instance of `params_cls` from `values` (strings from the CLI or typed values)."""
    fields = {f.name: f for f in dataclasses.fields(params_cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        valid = ", ".join(sorted(fields)) or "(none)"
        raise UserError(f"unknown parameter(s) {', '.join(unknown)} for perturbation {owner!r}; "
                        f"valid: {valid}")
    hints = typing.get_type_hints(params_cls)
    typed = {k: coerce(v, hints[k], f"{owner}.{k}") for k, v in values.items()}
    return params_cls(**typed)


def params_to_dict(params) -> dict:
    """JSON-able dict of every parameter (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
