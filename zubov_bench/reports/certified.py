"""Certified columns in tables and figures, and how they relate to the empirical ones.

A certified record (threat `l2-certified`, written by `zubov-bench certify`) holds, at one L2 radius,
the fraction of examples whose prediction is correct and certified at that radius or more.
Randomized smoothing certifies the *smoothed* classifier g, not the deployed model f: its certified
accuracy is a lower bound on g's robust accuracy only, so it may exceed f's empirical robust
accuracy at the same epsilon (a noise-trained model typically has that). The comparison
`certified <= empirical` is therefore made only for certificates of the deployed model itself.
"""
from __future__ import annotations

from ..evaluation.certify import CERTIFIED_THREAT
from ..records import Record
from .labels import THREATS, severity_label

CERTIFIED_NOTE = ("Certified columns: the fraction of examples whose prediction is correct and certified "
                  "at L₂ radius ≥ r (abstentions count as wrong; radius 0: the smoothed classifier's accuracy), "
                  "each certificate failing with probability ≤ α. Smoothing certifies the smoothed classifier, "
                  "not the model, so these may exceed the model's empirical robust accuracy.")


def is_certified(threat: str) -> bool:
    return threat == CERTIFIED_THREAT


def certified_group(perturbation: str) -> str:
    """Column-group header, e.g. 'Certified L₂, smoothing σ=0.25 (radius)'."""
    return f"Certified {THREATS['l2']}, {perturbation} (radius)"


def certified_title(perturbation: str) -> str:
    return f"Certified {THREATS['l2']}: {perturbation}"


def certified_column(perturbation: str, radius: float) -> tuple[str, str]:
    """(group, label) of a certified column in the worst-case table."""
    return f"Certified {THREATS['l2']} r = {severity_label(radius)}", perturbation


def certifies_deployed_model(record: Record) -> bool:
    """Whether the certificate is about the deployed model (smoothing's is about the smoothed one)."""
    return is_certified(record.threat) and record.params.get("method") not in ("smoothing",)


CHECK = "certified_le_empirical"


def certified_above_empirical(records: list[Record]) -> list[tuple[Record, Record]]:
    """(certificate, worst-case record) pairs where a certificate of the deployed model claims more
    than the empirical worst case at the same L2 epsilon on the same examples: an unsound certificate
    (or an attack evaluated on other examples). Smoothing certificates are exempt (see the docstring)."""
    from ..evaluation.worst_case import WORST_CASE

    def subset(r: Record) -> tuple:
        return (r.checkpoint_sha256, r.dataset, r.params.get("n_samples", r.n), round(r.severity, 8))

    worst = {}
    for r in records:
        if r.perturbation == WORST_CASE and r.threat == "l2":
            worst.setdefault(subset(r), []).append(r)
    return [(c, w) for c in records if certifies_deployed_model(c) and c.severity > 0
            for w in worst.get(subset(c), []) if c.robust_acc > w.robust_acc]


def flag_certified_cells(cells: dict, records: list[Record]) -> None:
    """Mark table cells (method, column key) whose certificate exceeds the empirical worst case."""
    from .aggregate import column_key

    for certificate, _ in certified_above_empirical(records):
        cell = cells.get((certificate.method, column_key(certificate)))
        if cell is not None:
            cell.failed.add(CHECK)
