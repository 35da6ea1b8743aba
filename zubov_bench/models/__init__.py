"""Models: one interface (`BenchModel`), one registry (`register_model` / `create_model`)."""
from .base import BenchModel, ODEConfig, ODEModel, Stage, batch_accuracy, classification_loss, make_config
from .ode import SolverConfig, SolverError
from .registry import MODELS, create_model, list_models, register_model

__all__ = ["BenchModel", "ODEConfig", "ODEModel", "Stage", "SolverConfig", "SolverError", "MODELS",
           "create_model", "list_models", "register_model", "make_config", "batch_accuracy",
           "classification_loss"]
