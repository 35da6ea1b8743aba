"""Region-of-attraction analysis moved to evaluation/roa.py (reports only draw); these names stay
importable from here for existing callers."""
from ..evaluation.roa import (RoAResult, assign_to_equilibria, check_roa_model, compute_roa,  # noqa: F401
                              default_extent, default_tol, grid_states, region_iou)
