"""FGSM (Goodfellow et al. 2015), torchattacks' implementation; kept for old tables."""
from __future__ import annotations

from .base import Attack
from .pgd import AsImages, as_images
from .registry import register_perturbation


@register_perturbation("fgsm")
class FGSM(Attack):
    description = "FGSM, one L∞ signed-gradient step of size eps (torchattacks), for comparison only"
    display_name = "FGSM"
    iterative = False

    def attack(self, model, x, y, eps, generator):
        import torchattacks

        atk = torchattacks.FGSM(AsImages(model, x.shape[1:]), eps=eps)
        atk.set_device(x.device)
        return atk(as_images(x), y).reshape(x.shape)
