"""Common corruptions in the style of MNIST-C (Mu & Gilmer 2019, arXiv 1906.02337).

One file per corruption; importing this package registers them all (the perturbation registry
imports it like any other module of `zubov_bench.perturbations`). `eval --attack corruptions`
runs the whole group; `all` leaves it out (docs/corruptions.md).
"""
import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
