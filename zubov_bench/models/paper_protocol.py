"""The `paper_attack` trait a model class may declare beside @register_model: how its own paper
attacked it. Lives in the models layer so baselines can declare it; evaluation/paper_protocol.py
turns it into records (`eval --attack paper`) and reports/paper.py into the table's columns."""
from __future__ import annotations

from dataclasses import dataclass, field

EPS_UNITS = ("pixel", "normalised")


@dataclass(frozen=True)
class PaperProtocol:
    """`attack`: a registered perturbation name ("pgd", "fgsm"); `params`: its settings as in the paper.
    `eps_units="normalised"`: the paper applied ε after input normalisation, so a nominal ε moves
    pixels by only ε·std (what the paper's number measured)."""

    attack: str
    params: dict = field(default_factory=dict)
    eps_units: str = "pixel"
    citation: str = ""

    def __post_init__(self):
        if self.eps_units not in EPS_UNITS:
            raise ValueError(f"eps_units must be one of {EPS_UNITS}, got {self.eps_units!r}")
