"""`zubov-bench reproduce`: a whole study (train, evaluate, tables, figures, README) from a preset."""
from .pipeline import ReproduceResult, reproduce
from .preset import PRESETS, AttackGroup, EvalPlan, Preset, RoAPlan, load_preset, parse_preset, \
    register_reproduce_preset

__all__ = ["PRESETS", "AttackGroup", "EvalPlan", "Preset", "ReproduceResult", "RoAPlan", "load_preset",
           "parse_preset", "register_reproduce_preset", "reproduce"]
