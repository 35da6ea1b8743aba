"""The result record: one per (checkpoint, dataset, perturbation, parameter, seed, gradient solver).

The evaluation writes these; tables and plots only read them.
"""
from __future__ import annotations

import functools
import hashlib
import json
import typing
from dataclasses import MISSING, asdict, dataclass, field, fields


SCHEDULING_PARAMS = ("batch_size",)  # how the work was split, not what it measured
SOURCE_PARAM_PREFIX = "source"  # source, source_sha256: where a transfer attack's examples came from
# what a certificate computed from the checkpoint and stored beside its settings (model_facts in
# evaluation/lyapunov_certificate.py): facts of one trained model, not part of what was asked for
CHECKPOINT_FACTS = ("stem_lipschitz", "level", "disjointness", "flow_invariance")


@dataclass
class Record:
    model: str  # registry name of the model, e.g. "zubov"
    method: str  # label shown in tables (defaults to the model name; ablations use their config name)
    dataset: str
    checkpoint: str  # path as given
    checkpoint_sha256: str
    train_seed: int
    perturbation: str  # registry name, e.g. "pgd", or "worst-case" for the per-example union
    threat: str  # "linf", "l2" or "noise"
    severity: float  # epsilon, sigma, a or p, in raw pixel units
    seed: int  # evaluation seed
    grad_solver: str = "deployed"  # deployed | rk4:STEPS | bpda:STEPS | none (noise, black-box)
    n: int = 0
    clean_acc: float = float("nan")  # on exactly the evaluated subset
    robust_acc: float = float("nan")
    params: dict = field(default_factory=dict)  # full attack settings
    wall_time: float = 0.0
    mean_nfe: float = float("nan")
    n_failed: int = 0  # samples whose solve failed (counted as not robust)
    # check name -> {"ok": bool, "detail": str}; a name "<perturbation>:<flag>" is a warning the
    # attack's own library raised while running (is_attack_flag), not one of the suite's checks
    sanity: dict = field(default_factory=dict)
    members: list = field(default_factory=list)  # worst-case records: ids of the member records
    suite_version: str = ""
    shard: str = ""  # "i/N" for a partial record, "" for a complete one
    outcomes_sha256: str = ""  # sha256 of outcomes/<id>.npz as written; checked on every read

    @property
    def key(self) -> tuple:
        return (self.checkpoint_sha256, self.dataset, self.perturbation, self.threat,
                round(self.severity, 8), self.seed, self.grad_solver,
                json.dumps(self.params, sort_keys=True, default=str), self.shard)

    @property
    def id(self) -> str:
        return hashlib.sha1(json.dumps(self.key, default=str).encode()).hexdigest()[:16]

    @property
    def attack_settings(self) -> dict:
        """The settings that define what was measured: `params` without those that only locate or
        schedule the work (a transfer source's path and sha256, one per store and training seed;
        the batch size), nor the facts a certificate computed from the checkpoint (its stem's
        Lipschitz bound, its level). Two records of the same method with equal settings are the
        same attack."""
        return {k: v for k, v in self.params.items()
                if k not in SCHEDULING_PARAMS + CHECKPOINT_FACTS and not k.startswith(SOURCE_PARAM_PREFIX)}

    @property
    def sanity_ok(self) -> bool:
        return all(v.get("ok", True) for v in self.sanity.values())

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        """A record from its stored form; ValueError (saying which field) unless it fits the schema.

        The schema is the dataclass itself: every field without a default is required, and every
        value must have its field's type, so a new field with a default needs no change here.
        """
        if not isinstance(d, dict):
            raise ValueError(f"a record is a JSON object, not {type(d).__name__}")
        types = _field_types(cls)
        values = {}
        for f in fields(cls):
            if f.name not in d:
                if f.default is MISSING and f.default_factory is MISSING:
                    raise ValueError(f"field '{f.name}' is missing")
                continue
            values[f.name] = _checked(f.name, d[f.name], types[f.name])
        record = cls(**values)
        if "id" in d and d["id"] != record.id:
            raise ValueError(f"stored id {d['id']!r} does not match the record's content ({record.id})")
        return record


@functools.cache
def _field_types(cls) -> dict:
    # resolving the string annotations costs more than parsing a record's JSON: once per class
    return typing.get_type_hints(cls)


ATTACK_FLAG_SEPARATOR = ":"


def attack_flag_name(perturbation: str, flag: str) -> str:
    return f"{perturbation}{ATTACK_FLAG_SEPARATOR}{flag}"


def is_attack_flag(check: str) -> bool:
    """A `sanity` entry an attack library raised (e.g. "autoattack:dynamic"), not a suite check."""
    return ATTACK_FLAG_SEPARATOR in check


def _checked(name: str, value, expected: type):
    """`value` as `expected` (an int is a float; a bool is neither), or ValueError naming the field."""
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, bool) and expected is not bool or not isinstance(value, expected):
        raise ValueError(f"field '{name}' must be {expected.__name__}, not {json.dumps(value, default=str)[:40]}")
    return value
