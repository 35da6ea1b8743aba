from .run import resolve_run_config, resume_run, train_run
from .trainer import NumericalError, Trainer, TrainConfig, accuracy, resolve_device

__all__ = ["Trainer", "TrainConfig", "NumericalError", "accuracy", "resolve_device",
           "resolve_run_config", "train_run", "resume_run"]
