"""Evaluation: gradient views, the results store, worst case, sanity checks and `evaluate`.

Names are imported lazily, so that reading a results store does not import torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "evaluate": "runner", "recheck": "runner", "ResultsStore": "store", "GradientView": "solver_view", "GradSolver": "solver_view",
    "parse_grad_solvers": "solver_view", "run_checks": "sanity", "WORST_CASE": "worst_case",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
