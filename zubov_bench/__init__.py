"""zubov-bench: train and stress-test stable Neural ODE classifiers under one honest protocol."""
__version__ = "0.1.0"
