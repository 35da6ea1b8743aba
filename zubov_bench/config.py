"""Reading YAML or TOML config files into {model, dataset, train: {...}, model: {...}}."""
from __future__ import annotations

import dataclasses
import math
from pathlib import Path

from .errors import UserError

SECTIONS = ("train", "model_config")
TOP_KEYS = ("model", "dataset") + SECTIONS


def load_config_file(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"config file {path} is not UTF-8 text (byte {exc.start})") from None
    try:
        if path.suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as exc:  # yaml and toml raise many error types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"cannot parse config file {path}: {first}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping")
    unknown = sorted(set(data) - set(TOP_KEYS))
    if unknown:
        raise UserError(f"config file {path}: unknown key(s) {', '.join(unknown)}; "
                        f"allowed: {', '.join(TOP_KEYS)}")
    for key in ("model", "dataset"):
        if key in data and not isinstance(data[key], str):
            raise UserError(f"config file {path}: '{key}' must be a name, e.g. {key}: "
                            f"{'node' if key == 'model' else 'digits'}; got {data[key]!r}")
    for section in SECTIONS:
        if not isinstance(data.get(section, {}), dict):
            raise UserError(f"config file {path}: '{section}' must be a mapping")
    return data


# One coercion for every typed setting (model configs, training keys, perturbation parameters):
# a value from the CLI (a string) or from YAML/JSON (typed) becomes the type its dataclass field
# declares, or the call fails with one line naming the key.
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_NONE = ("", "none", "null", "auto")


def coerce(value, hint, key: str):
    """`value` as the type `hint`: bool, int, float, str, Literal, Optional/X | None, tuple[X, ...],
    or a bare `tuple` (a comma-separated string is read as floats; a list keeps its items)."""
    import types
    import typing

    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):  # Optional[X]
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        return coerce(value, next(a for a in args if a is not type(None)), key)
    if origin is typing.Literal:
        text = str(value).strip().lower()
        if text not in args:
            raise UserError(f"{key}={value!r} is not one of {', '.join(map(str, args))}")
        return text
    if origin is tuple or hint is tuple:
        items = [s for s in value.split(",") if s.strip()] if isinstance(value, str) else list(value)
        if args:
            return tuple(coerce(v, args[0], key) for v in items)
        return tuple(coerce(v, float, key) for v in items) if isinstance(value, str) else tuple(items)
    try:
        return _scalar(value, hint)
    except (TypeError, ValueError):
        raise UserError(f"{key}={value!r} is not a valid {getattr(hint, '__name__', hint)}") from None


def _scalar(value, hint):
    import math

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
        if isinstance(value, int):  # exact, also beyond float precision
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value.strip())
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


def build_dataclass(cls: type, values: dict, what: str):
    """An instance of the dataclass `cls`: its defaults, then `values` coerced by field type;
    an unknown key is one error naming the valid ones."""
    import dataclasses
    import typing

    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise UserError(f"unknown {what} key(s) {', '.join(unknown)}; valid: {', '.join(sorted(fields)) or '(none)'}")
    hints = typing.get_type_hints(cls)
    return cls(**{k: coerce(v, hints[k], k) for k, v in values.items()})


@dataclasses.dataclass(frozen=True)
class Nested:
    """A sub-config (e.g. the Lyapunov network's) kept as flat fields of its model's config, which
    committed checkpoints store: sub field `name` lives in the flat field `prefix + name`, or in
    `renames[name]`. `build` copies by name, so a field added to either side without its partner
    fails at construction instead of shifting positional arguments."""
    cls: type
    prefix: str
    renames: dict = dataclasses.field(default_factory=dict)

    def flat_name(self, name: str) -> str:
        return self.renames.get(name, self.prefix + name)

    def build(self, flat):
        return self.cls(**{f.name: getattr(flat, self.flat_name(f.name)) for f in dataclasses.fields(self.cls)})


def flatten_dotted(values: dict, nested: dict, owner: str) -> dict:
    """Dotted keys (`lyapunov.form`) to the flat fields they address (`lyap_form`), in order, so a
    later source still overrides an earlier one; flat keys pass through."""
    out = {}
    for key, value in values.items():
        section, dot, name = key.partition(".")
        if not dot:
            out[key] = value
            continue
        if section not in nested:
            raise UserError(f"unknown config section {section!r} in {key!r} for {owner}; "
                            f"sections: {', '.join(sorted(nested)) or '(none)'}")
        sub = nested[section]
        names = [f.name for f in dataclasses.fields(sub.cls)]
        if name not in names:
            raise UserError(f"unknown key {key!r} for {owner}; valid in {section}: {', '.join(names)}")
        out.pop(sub.flat_name(name), None)  # keep insertion order = precedence order
        out[sub.flat_name(name)] = value
    return out


@dataclasses.dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    seed: int = 0
    schedule: str = "cosine"  # cosine | none
    grad_clip: float = 0.0
    save_every_steps: int = 0  # also checkpoint every N steps (0: every epoch only)
    eval_batch_size: int = 1000
    device: str = "cpu"
    progress: bool = True
    deterministic: bool = True  # torch deterministic kernels: a seed reproduces bit for bit
    compile: bool = False  # torch.compile the model's vector field
    adv_eps: float = 0.0  # > 0: PGD adversarial training at this L∞ radius (training/adversarial.py)
    adv_steps: int = 7  # PGD steps per batch when adv_eps > 0
    adv_fraction: float = 1.0  # share of each batch replaced by PGD examples (1: Madry et al.; 0.5: half clean)
    log: str = "csv"  # csv: metrics.csv; tensorboard: event files beside it too (training/loggers.py)

    def validate(self) -> None:
        if self.epochs < 1:
            raise UserError(f"--epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise UserError(f"--batch-size must be >= 1, got {self.batch_size}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise UserError(f"--lr must be a positive number, got {self.lr}")
        if self.weight_decay < 0 or self.grad_clip < 0 or self.save_every_steps < 0:
            raise UserError("weight_decay, grad_clip and save_every_steps must be >= 0")
        if not (0 <= self.adv_eps <= 1) or self.adv_steps < 1:
            raise UserError(f"adv_eps must be in [0, 1] and adv_steps >= 1, got {self.adv_eps} and {self.adv_steps}")
        if not 0 < self.adv_fraction <= 1:
            raise UserError(f"adv_fraction must be in (0, 1], got {self.adv_fraction}")
        if self.schedule not in ("cosine", "none"):
            raise UserError(f"unknown schedule {self.schedule!r}; use cosine or none")
