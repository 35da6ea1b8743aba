"""Typed perturbation parameters: a dataclass per perturbation, filled from CLI/YAML values."""
from __future__ import annotations

import dataclasses
import math
import typing
from typing import Any, Literal, Union

from ..errors import UserError

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("", "none", "null", "auto")


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


def coerce(value: Any, hint: Any, key: str) -> Any:
    """Convert `value` to the type `hint` (bool, int, float, str, Literal, Optional, tuple[str, ...])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Union:  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        return coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is Literal:
        text = str(value).strip().lower()
        if text not in args:
            raise UserError(f"{key}={value!r} is not one of {', '.join(args)}")
        return text
    if origin is tuple:
        items = [s for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
        return tuple(coerce(v, args[0], key) for v in items)
    try:
        return _scalar(value, hint)
    except (TypeError, ValueError):
        raise UserError(f"{key}={value!r} is not a valid {hint.__name__}") from None


def _scalar(value: Any, hint: type) -> Any:
    if hint is bool:
        if isinstance(value, str):
            text = value.strip().lower()
            if text not in _TRUE + _FALSE:
                raise ValueError(value)
            return text in _TRUE
        if value not in (0, 1):
            raise ValueError(value)
        return bool(value)
    if hint is int:
        number = float(value)
        if not number.is_integer():
            raise ValueError(value)
        return int(number)
    if hint is float:
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return number
    return hint(value).strip() if hint is str else hint(value)


def params_to_dict(params) -> dict:
    """JSON-able dict of every parameter (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(params).items()}


def require(condition: bool, message: str) -> None:
    if not condition:
        raise UserError(message)
