"""Human-readable names for perturbations, threats and severities (plain Unicode text).

A perturbation's name and severity symbol are traits of its class (`display_name`,
`severity_symbol`); a record of a perturbation that is no longer registered shows its registry name.
"""
from __future__ import annotations

WORST_CASE_NAME = "Worst case"  # the per-example union record, not a registered perturbation
THREATS = {"linf": "L∞", "l2": "L₂"}


def _registered(name: str):
    from ..perturbations import PERTURBATIONS

    return PERTURBATIONS.get(name) if name in PERTURBATIONS else None


def perturbation_name(name: str) -> str:
    from ..evaluation.worst_case import WORST_CASE

    if name == WORST_CASE:
        return WORST_CASE_NAME
    cls = _registered(name)
    return cls.label() if cls is not None else name


def severity_symbol(name: str) -> str:
    """A noise's severity parameter, e.g. 'σ' for gaussian; '' if it declares none."""
    cls = _registered(name)
    return cls.severity_symbol if cls is not None else ""


def perturbation_label(name: str, threat: str) -> str:
    """Group header, e.g. 'PGD L∞ (ε)' or 'Gaussian (σ)'."""
    if threat in THREATS:
        return f"{perturbation_name(name)} {THREATS[threat]} (ε)"
    symbol = severity_symbol(name)
    return f"{perturbation_name(name)} ({symbol})" if symbol else perturbation_name(name)


def severity_label(severity: float, threat: str = "") -> str:
    """'0.1', or 'k/255' for the small L-inf budgets of colour datasets."""
    k = severity * 255
    if threat == "linf" and round(severity, 3) != severity and abs(k - round(k)) < 1e-6:
        return f"{round(k)}/255"
    return f"{severity:g}"


def threat_severity_label(threat: str, severity: float) -> str:
    return f"{THREATS.get(threat, threat)} ε = {severity_label(severity, threat)}"


def series_label(name: str, threat: str) -> str:
    """Panel title without the parameter symbol, e.g. 'PGD L∞'."""
    return f"{perturbation_name(name)} {THREATS[threat]}" if threat in THREATS else perturbation_name(name)
