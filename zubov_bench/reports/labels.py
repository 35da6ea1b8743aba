"""Human-readable names for perturbations, threats and severities (plain Unicode text)."""
from __future__ import annotations

NAMES = {
    "fgsm": "FGSM", "pgd": "PGD", "autoattack": "AutoAttack", "square": "Square",
    "transfer": "Transfer", "lyapunov": "Lyapunov-aware",
    "pgd-l2": "PGD", "worst-case": "Worst case", "gaussian": "Gaussian", "uniform": "Uniform",
    "salt-pepper": "Salt & pepper",
}
THREATS = {"linf": "L∞", "l2": "L₂"}
NOISE_PARAMETER = {"gaussian": "σ", "uniform": "a", "salt-pepper": "p"}


def perturbation_name(name: str) -> str:
    return NAMES.get(name, name)


def perturbation_label(name: str, threat: str) -> str:
    """Group header, e.g. 'PGD L∞ (ε)' or 'Gaussian (σ)'."""
    if threat in THREATS:
        return f"{perturbation_name(name)} {THREATS[threat]} (ε)"
    symbol = NOISE_PARAMETER.get(name)
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
