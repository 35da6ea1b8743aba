"""zubov-bench: train and stress-test stable Neural ODE classifiers under one honest protocol."""
import warnings

__version__ = "0.1.0"

# torch's forward-mode AD loads its JVP decompositions through torch.jit.script, which warns on
# every process start; the warning is about torch internals, not about anything a user can change.
warnings.filterwarnings("ignore", message=r"`torch.jit.script` is deprecated", category=FutureWarning)
