"""What to evaluate: parsed attack requests, ε grids, the test subset and the shard slice."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import UserError

SUBSET_SEED = 0  # the test subset is the same for every evaluation seed
SANITY_EPS = 1.0  # check 1: PGD at eps = 1.0 (L∞) must reach about 0
SANITY_SAMPLES = 200


@dataclass
class AttackRequest:
    name: str
    params: dict = field(default_factory=dict)
    explicit: bool = True  # named by the user (not via `all`)


def parse_attacks(values, transfer_from: str | None = None) -> list[AttackRequest]:
    """'all', a group ('corruptions'), 'pgd', 'pgd:steps=20,loss=dlr' (repeatable) -> requests,
    validated against the registry. `all` is every perturbation outside a group."""
    from ..perturbations import PERTURBATIONS
    from ..perturbations.registry import group_members

    values = [v for v in ([values] if isinstance(values, str) else list(values or ["all"])) if v.strip()]
    requests: list[AttackRequest] = []
    for value in values or ["all"]:
        name, _, arg = value.strip().partition(":")
        if name == "paper":  # each model's own paper attack, resolved per checkpoint (paper_protocol.py)
            if arg:
                raise UserError("`paper` takes no parameters: each model declares its paper's settings")
            requests.append(AttackRequest("paper", {}))
            continue
        if name == "all":
            if arg:
                raise UserError("`all` takes no parameters; name the attack to set them")
            requests += [AttackRequest(n, {}, explicit=False) for n, cls in PERTURBATIONS.items() if not cls.group]
            continue
        members = group_members(name)
        if members and name not in PERTURBATIONS:  # a group: every member at its own grid, like `all`
            if arg:
                raise UserError(f"`{name}` (a group) takes no parameters; name a member to set them")
            requests += [AttackRequest(n, {}, explicit=False) for n in members]
            continue
        PERTURBATIONS.get(name)  # UserError for unknown names, with a suggestion
        requests.append(AttackRequest(name, _parse_params(arg, value)))
    unique: dict[tuple, AttackRequest] = {}
    for req in requests:  # an explicit request wins over the same name from `all`
        unique.setdefault((req.name, repr(sorted(req.params.items()))), req)
    return _with_source(list(unique.values()), transfer_from)


def _parse_params(text: str, whole: str) -> dict:
    params = {}
    for item in _split_items(text):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"bad attack spec {whole!r}: expected NAME:key=value,key=value")
        params[key.strip()] = value.strip()
    return params


def _split_items(text: str) -> list[str]:
    """Split on commas that start a new key=value pair (list values may contain commas)."""
    items: list[str] = []
    for part in text.split(",") if text else []:
        if "=" in part or not items:
            items.append(part)
        else:
            items[-1] += "," + part
    return items


def _with_source(requests: list[AttackRequest], source: str | None) -> list[AttackRequest]:
    """Fill in `source` (--transfer-from) for attacks that replay examples from another checkpoint."""
    from ..perturbations import PERTURBATIONS

    out = []
    for req in requests:
        if req.name == "paper":
            out.append(req)
            continue
        if PERTURBATIONS.get(req.name).needs_source and "source" not in req.params:
            if source is None:
                if req.explicit:
                    raise UserError(f"the {req.name} attack needs a source checkpoint: pass --transfer-from PATH")
                continue  # `all` without a source: nothing to transfer from
            req = AttackRequest(req.name, {**req.params, "source": str(source)}, req.explicit)
        out.append(req)
    return out


def parse_eps(text) -> tuple[float, ...] | None:
    """'0.1,0.2' or a sequence -> finite positive floats, or None for the dataset grid."""
    if text is None:
        return None
    if isinstance(text, str) and not text.strip():  # `--eps ''` is a mistake, not a request for the grid
        raise UserError("--eps is empty: give severities like 0.1,0.2, or leave --eps out for the dataset grid")
    items = text.split(",") if isinstance(text, str) else list(text)
    out = []
    for item in items:
        try:
            value = float(item)
        except (TypeError, ValueError):
            raise UserError(f"bad --eps value {item!r}: expected numbers like 0.1,0.2") from None
        if not math.isfinite(value) or value <= 0:
            raise UserError(f"--eps values must be finite and > 0, got {item!r}")
        out.append(value)
    if not out:
        raise UserError("--eps is empty")
    return tuple(dict.fromkeys(out))


def parse_shard(text) -> tuple[int, int] | None:
    """'i/N' with 0 <= i < N -> (i, N); None for no sharding."""
    if text is None or text == "":
        return None
    i, sep, n = str(text).partition("/")
    try:
        i, n = int(i), int(n)
    except ValueError:
        i = n = -1
    if not sep or n < 1 or not 0 <= i < n:
        raise UserError(f"bad --shard {text!r}: expected i/N with 0 <= i < N, e.g. 0/4")
    return i, n


def eval_subset(n_test: int, n_samples: int) -> torch.Tensor:
    """Dataset indices of the evaluated subset: the first n of a fixed seeded permutation."""
    perm = torch.randperm(n_test, generator=torch.Generator().manual_seed(SUBSET_SEED))
    return perm[: min(n_samples, n_test)]


def batch_slices(n: int, batch_size: int) -> list[np.ndarray]:
    return [np.arange(start, min(start + batch_size, n)) for start in range(0, n, batch_size)]


def shard_batches(n_batches: int, shard: tuple[int, int] | None) -> list[int]:
    """Batch numbers of a shard: batch b goes to shard b mod N, so each batch is computed
    exactly as in a single run and the merged shards equal it."""
    if shard is None:
        return list(range(n_batches))
    i, n = shard
    return [b for b in range(n_batches) if b % n == i]
