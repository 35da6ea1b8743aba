"""Transfer attack: PGD crafted on a source checkpoint, replayed on the target model."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..errors import UserError
from .base import Attack, find_attribute
from .pgd import PGDParams, run_pgd, validate_pgd
from .registry import register_perturbation


@dataclass
class TransferParams(PGDParams):
    source: Optional[str] = None  # path of the source checkpoint (e.g. the undefended backbone)


@register_perturbation("transfer")
class Transfer(Attack):
    description = "PGD crafted on a source checkpoint (source=PATH) and replayed on the target"
    display_name = "Transfer"
    kind = "transfer"
    gradient_based = False  # the gradients come from the source model only
    needs_source = True
    Params = TransferParams

    def __init__(self, **params):
        super().__init__(**params)
        self._source = None  # (model, metadata), loaded on first use: creating the attack loads nothing

    def validate(self):
        validate_pgd(self.params, self.name)

    def source(self):
        """The source model and its checkpoint metadata."""
        if self._source is None:
            self._source = self._load_source(self.params.source)
        return self._source

    def prepare(self):
        self.source()

    @staticmethod
    def _load_source(path):
        from ..checkpoint import load_checkpoint

        if not path:
            raise UserError("transfer needs a source checkpoint: pass source=PATH "
                            "(for example an undefended node trained on the same dataset)")
        return load_checkpoint(path)

    def settings(self):
        return {**super().settings(), "source_sha256": self.source()[1]["sha256"]}

    def attack(self, model, x, y, eps, generator):
        source = self.source()[0].to(x.device)
        if tuple(source.spec.input_shape) != tuple(x.shape[1:]):
            raise UserError(f"transfer source {self.params.source} takes inputs of shape "
                            f"{tuple(source.spec.input_shape)}, the target gets {tuple(x.shape[1:])}")
        target_spec = find_attribute(model, "spec")
        if target_spec is not None and target_spec.num_classes != source.spec.num_classes:
            raise UserError(f"transfer source {self.params.source} has {source.spec.num_classes} classes, "
                            f"the target {target_spec.num_classes}")
        return run_pgd(source, model, x, y, eps, self.params, generator)
