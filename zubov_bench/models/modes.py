"""Evaluation mode for the length of a block, whatever the code inside does to it.

Attacks, certificates and diagnostics measure the deployed model: dropout off, normalisation layers
on their running statistics. Libraries called inside (torchattacks restores the training flag of the
module it was given, and a wrapper module is in training mode from birth) can switch a model back
to training mode behind the caller's back, which turned LyaNet's dropout on for every prediction
after the first torchattacks attack and made its robust accuracies random from run to run.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn


@contextlib.contextmanager
def evaluation_mode(model: nn.Module | None) -> Iterator[nn.Module | None]:
    """`model.eval()` inside the block; afterwards every submodule's own training flag as it was.
    None (a noise, which needs no model) passes through."""
    if model is None:
        yield model
        return
    flags = [(module, module.training) for module in model.modules()]
    model.eval()
    try:
        yield model
    finally:
        for module, training in flags:
            module.training = training
