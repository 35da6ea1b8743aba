"""Certified columns in tables and figures, and how they relate to the empirical ones.

A certified record (threat `l2-certified`, written by `zubov-bench certify`) holds, at one L2 radius,
the fraction of examples whose prediction is correct and certified at that radius or more.
Randomized smoothing certifies the *smoothed* classifier g, not the deployed model f: its certified
accuracy is a lower bound on g's robust accuracy only, so it may exceed f's empirical robust
accuracy at the same epsilon (a noise-trained model typically has that). The comparison
`certified <= empirical` is therefore made only for certificates of the deployed model itself.
"""
from __future__ import annotations

from ..evaluation.certify import (CERTIFIED_THREAT, certified_above_empirical,  # noqa: F401 (re-exported)
                                   certifies_deployed_model, is_certified)
from ..records import Record
from .labels import THREATS, severity_label

CERTIFIED_NOTE = ("Certified columns: the fraction of examples whose prediction is correct and certified "
                  "at L₂ radius ≥ r (abstentions count as wrong; radius 0: the smoothed classifier's accuracy, "
                  "or the share a Lyapunov certificate covers). Smoothing: each certificate fails with "
                  "probability ≤ α, and it certifies the smoothed classifier, not the model, so it may exceed "
                  "the model's empirical robust accuracy. Lyapunov certificate: deterministic for the model "
                  "itself, its flow part numerically checked, not proven (docs/certify.md).")


def certified_group(perturbation: str) -> str:
    """Column-group header, e.g. 'Certified L₂, smoothing σ=0.25 (radius)'."""
    return f"Certified {THREATS['l2']}, {perturbation} (radius)"


def certified_title(perturbation: str) -> str:
    return f"Certified {THREATS['l2']}: {perturbation}"


def certified_column(perturbation: str, radius: float) -> tuple[str, str]:
    """(group, label) of a certified column in the worst-case table."""
    return f"Certified {THREATS['l2']} r = {severity_label(radius)}", perturbation


CHECK = "certified_le_empirical"


def flag_certified_cells(cells: dict, records: list[Record]) -> None:
    """Mark table cells (method, column key) whose certificate exceeds the empirical worst case."""
    from .aggregate import column_key

    for certificate, _ in certified_above_empirical(records):
        cell = cells.get((certificate.method, column_key(certificate)))
        if cell is not None:
            cell.failed.add(CHECK)
