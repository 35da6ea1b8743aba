"""Evaluation: gradient views, the results store, worst case, sanity checks and `evaluate`."""
from .runner import evaluate
from .sanity import run_checks
from .solver_view import GradientView, GradSolver, parse_grad_solvers
from .store import ResultsStore
from .worst_case import WORST_CASE

__all__ = ["evaluate", "ResultsStore", "GradientView", "GradSolver", "parse_grad_solvers", "run_checks",
           "WORST_CASE"]
