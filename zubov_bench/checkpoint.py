"""Safe checkpoints: tensors and plain data only, loaded with `torch.load(weights_only=True)`.

A checkpoint holds the model name, its resolved config, the data spec, the state dict and a
sha256 over (name, config, state), so that tampering or truncation is caught on load. The config
part leaves out settings added later while they hold the value that keeps the model as it was
(identity_settings), so a new setting does not change an unchanged model's sha256.
"""
from __future__ import annotations

import hashlib
import io
import json
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .data.base import DataSpec
from .errors import UserError
from .io import write_bytes

FORMAT = "zubov-bench-checkpoint/1"


def hash_neutral_settings(config_cls: type | None) -> dict[str, object]:
    """{setting: neutral value} a config class and its bases declare in `hash_neutral`."""
    return {key: value for cls in reversed(getattr(config_cls, "__mro__", ()))
            for key, value in vars(cls).get("hash_neutral", {}).items()}


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _plain(value):
    """As a checkpoint stores it (tuples as lists), so that (0.1, 0.2) matches [0.1, 0.2] and 0 matches 0.0."""
    return json.loads(json.dumps(value, default=str))


def identity_settings(config_cls: type | None, config: dict) -> dict:
    """The settings of `config` a content hash covers: all but the hash-neutral ones (ODEConfig's
    `hash_neutral`) that hold their neutral value."""
    neutral = hash_neutral_settings(config_cls)
    return {key: value for key, value in config.items()
            if not (key in neutral and _plain(value) == _plain(neutral[key]))}


def state_hash(model_name: str, config: dict, state: dict[str, torch.Tensor], config_cls: type | None = None) -> str:
    """sha256 over the model's name, its identity settings (`config_cls` names the hash-neutral
    ones) and its tensors."""
    digest = hashlib.sha256()
    digest.update(_canonical([model_name, identity_settings(config_cls, config)]).encode())
    for key in sorted(state):
        tensor = state[key].detach().cpu().contiguous()
        digest.update(key.encode())
        digest.update(str(tensor.dtype).encode() + str(tuple(tensor.shape)).encode())
        digest.update(tensor.numpy().tobytes() if tensor.dtype != torch.bfloat16
                      else tensor.float().numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | Path, model, extra: dict[str, Any] | None = None) -> str:
    """Write model + config + hash atomically; returns the content hash."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = json.loads(json.dumps(model.config_dict(), default=list))
    digest = state_hash(model.registry_name, config, state, getattr(model, "Config", None))
    payload = {
        "format": FORMAT,
        "suite_version": __version__,
        "model": model.registry_name,
        "config": config,
        "data": model.spec.to_dict(),
        "state_dict": state,
        "sha256": digest,
        "extra": extra or {},
    }
    buffer = io.BytesIO()  # serialised in memory: torch.save reports a full disk as a bare RuntimeError
    torch.save(payload, buffer)
    write_bytes(path, buffer.getvalue())
    return digest


def _load_failure_reason(exc: BaseException) -> str:
    """torch.load's error, as a short reason: unsafe content apart from plain corruption."""
    text = str(exc).strip()
    code = re.search(r"GLOBAL ([\w.]+)", text)
    if code:
        return f"it references code ({code[1]}), which safe loading (weights_only=True) refuses to run"
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].strip()
    first = text.splitlines()[0].split(". ")[0] if text else type(exc).__name__
    return f"corrupt or truncated file ({first[:120]})"


def safe_torch_load(path: str | Path):
    """torch.load with weights_only=True; any failure is a one-line UserError naming the file."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError,
            OSError, AttributeError, KeyError, IndexError, TypeError) as exc:
        raise UserError(f"cannot load {path}: {_load_failure_reason(exc)}") from None


def read_payload(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint not found: {path}")
    payload = safe_torch_load(path)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise UserError(f"{path} is not a zubov-bench checkpoint")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", verify: bool = True):
    """Rebuild the model from a checkpoint; returns (model in eval mode, payload without state)."""
    from .models import MODELS, create_model

    payload = read_payload(path)
    state = payload["state_dict"]
    config_cls = getattr(MODELS.get(payload["model"]), "Config", None)
    if verify and state_hash(payload["model"], payload["config"], state, config_cls) != payload.get("sha256"):
        raise UserError(f"checkpoint {path} failed its integrity check (content hash mismatch)")
    spec = DataSpec.from_dict(payload["data"])
    model = create_model(payload["model"], spec, **payload["config"])
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        raise UserError(f"checkpoint {path} does not match model {payload['model']!r}: "
                        f"{str(exc).splitlines()[0]}") from None
    meta = {k: v for k, v in payload.items() if k != "state_dict"}
    return model.to(device).eval(), meta
