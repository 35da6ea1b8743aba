"""zubov-bench: train and stress-test stable Neural ODE classifiers under one honest protocol."""
import warnings

__version__ = "0.1.0"

# torch's forward-mode AD loads its JVP decompositions through torch.jit.script, which warns on
# every process start; the warning is about torch internals, not about anything a user can change.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)

__all__ = ["evaluate", "load_results", "EvalOptions"]


def __getattr__(name):
    # Lazy, so that `import zubov_bench` (every CLI start) does not import torch and the evaluation.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'zubov_bench' has no attribute {name!r}")
