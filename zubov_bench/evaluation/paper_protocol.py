"""Paper protocol: the attack a baseline's own paper used, run beside the strict worst case.

A model class declares `paper_attack = PaperProtocol(...)` beside `@register_model`; `eval --attack
paper` resolves it per model (models without one are skipped with a note). Its records carry
params["protocol"] = "paper" and are never members of the strict worst case (worst_case.is_member):
the worst case stays the minimum over the strict grid, and "gap" = paper-protocol accuracy minus
that strict worst case, at the same ε and on the same test examples — the masking, measured.

Gradients flow through the deployed solver only (the paper evaluated its model as deployed: SODEF
through dopri5, TisODE through its fixed-step solver), never through the RK4/BPDA views.
"""
from __future__ import annotations

from ..errors import UserError
from ..models.paper_protocol import PaperProtocol

PAPER = "paper"  # the --attack keyword and the records' params["protocol"] value


def protocol_of(model) -> PaperProtocol | None:
    """The paper protocol a model (instance, class, or a wrapper holding one) declares, if any."""
    from ..perturbations.base import find_attribute

    found = find_attribute(model, "paper_attack") if not isinstance(model, type) else \
        getattr(model, "paper_attack", None)
    return found if isinstance(found, PaperProtocol) else None


def eps_scale(protocol: PaperProtocol, std) -> float:
    """Pixel-space ε per nominal ε. Normalised units: ε·std; with several channels the smallest std,
    so the attack stays inside every channel's paper ball (a slightly weaker attack, never a larger one)."""
    if protocol.eps_units == "pixel":
        return 1.0
    return float(min(std))


class PaperAttack:
    """The paper's perturbation, fed ε in pixel units; records keep the paper's nominal ε as severity
    and name the protocol, the units and the pixel ε in their params."""

    def __init__(self, protocol: PaperProtocol, std):
        from ..perturbations import create_perturbation

        try:
            self.inner = create_perturbation(protocol.attack, **protocol.params)
        except UserError as exc:
            raise UserError(f"paper protocol {protocol.attack!r}: {exc}") from None
        self.protocol = protocol
        self.scale = eps_scale(protocol, std)

    def __getattr__(self, name):  # name, threat, gradient_based, cost_rank, take_flags, ... of the attack
        return getattr(self.__dict__["inner"], name)

    def __setattr__(self, name, value):
        if name == "work_dir":
            setattr(self.inner, name, value)
        object.__setattr__(self, name, value)

    def settings(self) -> dict:
        # the citation stays on the class (and in docs): records and summaries keep only what changes the run
        return {**self.inner.settings(), "protocol": PAPER, "eps_units": self.protocol.eps_units,
                "eps_scale": self.scale}

    def __call__(self, model, x, y, severity, generator, index=None):
        return self.inner(model, x, y, float(severity) * self.scale, generator, index)

    def perturb(self, model, x, y, severity, generator, index):
        return self.inner.perturb(model, x, y, severity * self.scale, generator, index)


def paper_attack_for(model) -> PaperAttack | None:
    protocol = protocol_of(model)
    if protocol is None:
        return None
    return PaperAttack(protocol, model.spec.std)


def is_paper_record(record) -> bool:
    return record.params.get("protocol") == PAPER


def paper_protocol_accuracy(records, checkpoint: str, eps: float, threat: str = "linf") -> float | None:
    """Robust accuracy under the paper protocol for `checkpoint` (path or sha256) at nominal ε, or None.
    The lowest over its records (several seeds or sample sizes of the same protocol)."""
    values = [r.robust_acc for r in records if is_paper_record(r) and r.threat == threat
              and checkpoint in (r.checkpoint, r.checkpoint_sha256) and round(r.severity, 8) == round(eps, 8)
              and not r.shard]
    return min(values) if values else None


def strict_worst_case_accuracy(records, checkpoint: str, eps: float, threat: str = "linf",
                               n_samples: int | None = None) -> float | None:
    from .worst_case import WORST_CASE

    values = [r.robust_acc for r in records if r.perturbation == WORST_CASE and r.threat == threat
              and checkpoint in (r.checkpoint, r.checkpoint_sha256) and round(r.severity, 8) == round(eps, 8)
              and (n_samples is None or r.params.get("n_samples", r.n) == n_samples)]
    return min(values) if values else None


def paper_gap(records, checkpoint: str, eps: float, threat: str = "linf") -> float | None:
    """Paper-protocol accuracy minus the strict worst case at the same ε and subset size; None if
    either is missing. Positive: the paper's protocol overstates robustness by this much."""
    paper = [r for r in records if is_paper_record(r) and r.threat == threat and not r.shard
             and checkpoint in (r.checkpoint, r.checkpoint_sha256) and round(r.severity, 8) == round(eps, 8)]
    gaps = []
    for r in paper:
        strict = strict_worst_case_accuracy(records, checkpoint, eps, threat, r.params.get("n_samples", r.n))
        if strict is not None:
            gaps.append(r.robust_acc - strict)
    return min(gaps) if gaps else None
