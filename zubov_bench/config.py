"""Reading YAML or TOML config files into {model, dataset, train: {...}, model: {...}}."""
from __future__ import annotations

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
