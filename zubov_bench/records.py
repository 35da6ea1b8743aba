"""The result record: one per (checkpoint, dataset, perturbation, parameter, seed, gradient solver).

The evaluation writes these; tables and plots only read them.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field, fields


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
    sanity: dict = field(default_factory=dict)  # check name -> {"ok": bool, "detail": str}
    members: list = field(default_factory=list)  # worst-case records: ids of the member records
    suite_version: str = ""
    shard: str = ""  # "i/N" for a partial record, "" for a complete one

    @property
    def key(self) -> tuple:
        return (self.checkpoint_sha256, self.dataset, self.perturbation, self.threat,
                round(self.severity, 8), self.seed, self.grad_solver,
                json.dumps(self.params, sort_keys=True, default=str), self.shard)

    @property
    def id(self) -> str:
        return hashlib.sha1(json.dumps(self.key, default=str).encode()).hexdigest()[:16]

    @property
    def sanity_ok(self) -> bool:
        return all(v.get("ok", True) for v in self.sanity.values())

    def to_dict(self) -> dict:
        return {"id": self.id, **asdict(self)}

    @classmethod
    def from_dict(cls, d: dict) -> "Record":
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})
