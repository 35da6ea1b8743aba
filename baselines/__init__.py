"""Baseline models; importing this package registers them (see docs/add_your_model.md)."""
from . import fxts, lyanet, node_conv, sodef, stable, tisode  # noqa: F401  (registration side effects)
