"""AutoAttack (Croce & Hein 2020): the original code as shipped by `pyautoattack==0.2.0`, wrapped once.

`run_autoattack` is the only place the suite calls pyautoattack's `AutoAttack`. The seed is the
evaluation generator's seed, so a run is reproducible and can be compared with pyautoattack's own
`run_standard_evaluation` on the same samples and seed. Progress goes to the `auto-attack` logger.

Flags: the library's own checks (checks.py: randomized or dynamic defense, softmax output, zero
gradients, too few classes, Square beating the white-box attacks) log warnings to that logger.
`LibraryFlags` captures them while the library runs, and `take_flags()` hands them to the
evaluation, which stores them in the record's `sanity` as "autoattack:<flag>".

Resume: with a work dir (the evaluation gives each record one, in its results store), the run keeps
pyautoattack's `state_path` file there, so a killed run resumes at the attack it stopped in. The
library's own state file cannot be read back in 0.2.0 (its attack set is written as the text of
a Python set, and it is saved at most once a minute, so a finished attack is often not on disk),
and on resume the library returns adversarial examples of the current run only. `ResumableRun`
therefore gives the library a state class that writes every change atomically and reads itself
back, and keeps the adversarial examples of finished attacks beside it.
"""
from __future__ import annotations

import contextlib
import hashlib
import io as _io
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from ..errors import UserError
from ..io import write_bytes, write_text
from .base import Attack, find_attribute, require_images, seeded_rng
from .params import require
from .registry import register_perturbation

LIBRARY_NORM = {"linf": "Linf", "l2": "L2"}
ATTACKS = ("apgd-ce", "apgd-dlr", "apgd-t", "fab", "fab-t", "square")
VERSION_ATTACKS = {
    "standard": ("apgd-ce", "apgd-t", "fab-t", "square"),
    "plus": ("apgd-ce", "apgd-dlr", "fab", "square", "apgd-t", "fab-t"),
    "rand": ("apgd-ce", "apgd-dlr"),
}
# The members whose loss is a logit margin (DLR, FAB's logit differences), not cross-entropy
MARGIN_LOSS_ATTACKS = ("apgd-dlr", "apgd-t", "fab", "fab-t")
MIN_CLASSES = {"apgd-dlr": 3, "apgd-t": 4, "fab-t": 3}
LIBRARY_LOGGER = "auto-attack"
# A phrase of each warning pyautoattack's checks.py logs -> the flag name stored in records
LIBRARY_FLAGS = {
    "randomized defense": "randomized",
    "output is a probability distribution": "softmax_output",
    "zero gradient": "zero_gradients",
    "dynamic defense": "dynamic",
    "classes": "n_classes",
    "Square Attack has decreased": "square_beats_whitebox",
}
STATE_PREFIX = "autoattack-"


@dataclass
class AutoAttackParams:
    version: Literal["standard", "plus", "rand", "custom"] = "standard"
    norm: Literal["linf", "l2"] = "linf"
    attacks: tuple[str, ...] = ()  # version=custom only, from ATTACKS


@register_perturbation("autoattack")
class AutoAttack(Attack):
    description = ("AutoAttack (pyautoattack 0.2.0, original code): version standard|plus|rand|custom, "
                   "norm linf|l2")
    display_name = "AutoAttack"
    ensemble = True  # standard holds Square: not a pure gradient attack for sanity check 3
    relative_cost = 4  # several attacks in one: after the single white-box attacks
    Params = AutoAttackParams

    def __init__(self, **params):
        super().__init__(**params)
        self._flags: dict[str, str] = {}  # raised by the library since the last take_flags()

    def validate(self):
        p = self.params
        if p.version == "custom":
            require(bool(p.attacks), "autoattack: version=custom needs attacks=a,b,... "
                                     f"from {', '.join(ATTACKS)}")
            bad = [a for a in p.attacks if a not in ATTACKS]
            require(not bad, f"autoattack: unknown attack(s) {', '.join(bad)}; known: {', '.join(ATTACKS)}")
        else:
            require(not p.attacks, f"autoattack: attacks= is only used with version=custom, "
                                   f"not {p.version}")

    def attacks_to_run(self) -> tuple[str, ...]:
        p = self.params
        return p.attacks if p.version == "custom" else VERSION_ATTACKS[p.version]

    def uses_margin_loss(self):
        return any(name in MARGIN_LOSS_ATTACKS for name in self.attacks_to_run())

    def applies_to(self, model):
        spec = find_attribute(model, "spec")
        return spec is None or spec.is_image or "square" not in self.attacks_to_run()

    def attack(self, model, x, y, eps, generator):
        if "square" in self.attacks_to_run():
            require_images("autoattack (its Square attack)", x)
        p = self.params
        flags: dict[str, str] = {}
        try:
            return run_autoattack(model, x, y, eps=eps, norm=p.norm, version=p.version,
                                  attacks=p.attacks or None, seed=generator.initial_seed(),
                                  state_dir=self.work_dir, flags=flags)
        finally:
            for name, message in flags.items():
                self._flags.setdefault(name, message)

    def take_flags(self) -> dict[str, str]:
        flags, self._flags = self._flags, {}
        return flags


def run_autoattack(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, eps: float, norm: str,
                   version: str, seed: int, attacks=None, batch_size: int | None = None,
                   only=None, state_dir: Path | None = None, flags: dict | None = None) -> torch.Tensor:
    """pyautoattack's run_standard_evaluation on (x, y); returns x_adv. Leaves torch's RNG as it was.

    `only` runs a subset of the version's attacks with the version's settings (version=custom
    runs the library's defaults instead, for example 5 APGD restarts where standard runs 1).
    `state_dir`: keep a resumable state there (one run of these inputs at a time). `flags` receives
    the library's warnings as flag name -> message.
    """
    from pyautoattack import checks
    from pyautoattack.autoattack import AutoAttack as LibraryAutoAttack

    num_classes = _num_classes(model, x)
    to_run = list(only or attacks or VERSION_ATTACKS[version])
    for name in to_run:
        if num_classes < MIN_CLASSES.get(name, 2):
            raise UserError(f"autoattack: {name} needs at least {MIN_CLASSES[name]} classes, "
                            f"the model has {num_classes}")
    adversary = LibraryAutoAttack(model, norm=LIBRARY_NORM[norm], eps=eps, version=version,
                                  device=x.device, seed=seed,
                                  attacks=list(attacks) if version == "custom" else None)
    if only:
        adversary.attacks_to_run = list(only)
    # The library targets the 9 runner-up classes; with fewer classes there are fewer targets.
    adversary.apgd_targeted.n_target_classes = min(adversary.apgd_targeted.n_target_classes, num_classes - 1)
    adversary.fab.n_target_classes = min(adversary.fab.n_target_classes, num_classes - 1)
    # check_dynamic counts autograd calls in a module-level dict it never resets: one dynamic model
    # would flag every later model of this process
    for name in checks.funcs:
        checks.funcs[name] = 0
    captured = LibraryFlags()
    run = None
    if state_dir is not None:
        key = run_key(x, y, eps=eps, norm=norm, version=version, seed=seed, attacks=adversary.attacks_to_run)
        run = ResumableRun(Path(state_dir), key, x, adversary.attacks_to_run, captured)
    with captured, seeded_rng(seed, x.device), (run.installed(adversary) if run else contextlib.nullcontext()):
        # the library reseeds torch's global RNG itself; one batch: the resumable state needs it
        x_adv, _ = adversary.run_standard_evaluation(x, y, batch_size=batch_size or len(x),
                                                     state_path=run.state_path if run else None)
    if run is not None:
        x_adv = run.with_restored_examples(x_adv)
    if flags is not None:
        flags.update(captured.flags)
    return x_adv


class LibraryFlags(logging.Handler):
    """While active, collects the warnings pyautoattack logs (its checks.py) as flag -> message."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.flags: dict[str, str] = {}

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        name = next((flag for phrase, flag in LIBRARY_FLAGS.items() if phrase in message), "other")
        self.flags.setdefault(name, message)

    def __enter__(self):
        logging.getLogger(LIBRARY_LOGGER).addHandler(self)
        return self

    def __exit__(self, *exc):
        logging.getLogger(LIBRARY_LOGGER).removeHandler(self)


def run_key(x, y, **settings) -> str:
    """Names one run: its inputs and settings (a bisected batch or another ε is another run)."""
    digest = hashlib.sha256()
    digest.update(x.detach().cpu().contiguous().numpy().tobytes())
    digest.update(y.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps(settings, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


class ResumableRun:
    """pyautoattack's state file for one run, in `folder`, made resumable.

    STATE_PREFIX<key>.json is the library's state file (which attacks finished, which samples are
    still robust); `installed` makes the library write it on every change, atomically.
    STATE_PREFIX<key>.pt, written just before it, holds the same progress plus the adversarial
    examples found so far and the flags raised, so a resumed run returns every sample's example,
    not only those of its own attacks. On resume the state file is rewritten from it, so the two
    always agree. One batch per attack: the samples an attack ran on are those robust before it.
    """

    def __init__(self, folder: Path, key: str, x: torch.Tensor, attacks: list[str], captured: LibraryFlags):
        self.attacks = list(attacks)  # in the library's order
        self.state_path = folder / f"{STATE_PREFIX}{key}.json"
        self.examples_path = folder / f"{STATE_PREFIX}{key}.pt"
        self.captured = captured
        self.x_adv = x.detach().cpu().clone()
        self.fooled = torch.zeros(len(x), dtype=torch.bool)
        self.clean: torch.Tensor | None = None  # robust flags of the clean pass
        self.robust: torch.Tensor | None = None  # robust flags after the latest attack
        self.finished: list[str] = []  # attacks whose outcome is in `robust`
        self.restored = torch.zeros(len(x), dtype=torch.bool)  # fooled by attacks of an earlier run
        self.last_input: torch.Tensor | None = None
        self.pending_restore = False
        folder.mkdir(parents=True, exist_ok=True)
        for other in folder.glob(f"{STATE_PREFIX}*"):  # one run per record at a time
            if other not in (self.state_path, self.examples_path):
                other.unlink(missing_ok=True)
        if not self._restore():  # nothing saved, or unreadable: the run starts over
            self.state_path.unlink(missing_ok=True)
            self.examples_path.unlink(missing_ok=True)

    def _restore(self) -> bool:
        try:
            saved = torch.load(self.examples_path, map_location="cpu", weights_only=True)
            clean, robust = saved["clean"], saved["robust"]
            if saved["x_adv"].shape != self.x_adv.shape or not clean.shape == robust.shape == self.fooled.shape:
                return False
            fooled = clean & ~robust
            if not bool(saved["fooled"][fooled].all()):
                return False
        except Exception:  # missing, truncated or foreign: the run starts over
            return False
        self.x_adv[fooled] = saved["x_adv"][fooled].to(self.x_adv.dtype)
        self.fooled, self.restored = fooled.clone(), fooled.clone()
        self.clean, self.robust, self.finished = clean, robust.clone(), list(saved["finished"])
        for name, message in saved["flags"].items():
            self.captured.flags.setdefault(name, message)
        self._write_state(self.robust, self.finished)  # the library resumes from exactly this
        self.pending_restore = True
        return True

    @contextlib.contextmanager
    def installed(self, adversary):
        """The library reads its state class from its module and calls get_logits on each
        attack's output: both are swapped for this run only."""
        import pyautoattack.autoattack as library

        run = self
        base_state = library.EvaluationState

        class AtomicState(base_state):
            def to_disk(self, force: bool = False) -> None:
                if self.path is not None and run.clean is not None:
                    run.save()

            @classmethod
            def from_disk(cls, path: Path) -> "AtomicState":
                # The library's own restore branch never defines y_adv (UnboundLocalError in 0.2.0):
                # it takes the fresh branch, and the setter below swaps in the saved robust flags.
                d = json.loads(Path(path).read_text())
                return cls(set(d["_attacks_to_run"]), path=Path(path), _run_attacks=set(d["_run_attacks"]))

            @property
            def robust_flags(self):
                return self._robust_flags

            @robust_flags.setter
            def robust_flags(self, flags: torch.Tensor) -> None:
                if run.pending_restore:  # the clean pass of a resumed run: continue from the saved flags
                    flags.copy_(run.robust.to(flags.device))  # in place: the library's own tensor
                    run.pending_restore = False
                else:
                    run.record_outcome(flags, self.run_attacks)
                self._robust_flags = flags
                self.to_disk(force=True)

        library_logits = adversary.get_logits

        def get_logits(inputs):
            run.last_input = inputs  # after an attack: its adversarial examples
            return library_logits(inputs)

        library.EvaluationState = AtomicState
        adversary.get_logits = get_logits
        try:
            yield
        finally:
            library.EvaluationState = base_state
            del adversary.get_logits

    def record_outcome(self, flags: torch.Tensor, finished: set[str]) -> None:
        """Called with the robust flags after the clean pass and after each attack's batch."""
        flags = flags.detach().cpu().clone()  # the library changes its tensor in place
        if self.clean is None:
            self.clean = flags.clone()
        else:
            attacked = self.robust.nonzero().squeeze(1)
            if self.last_input is None or len(self.last_input) != len(attacked):
                raise RuntimeError("autoattack: the library attacked other samples than the robust ones "
                                   "(more than one batch per attack?); cannot keep a resumable state")
            newly = self.robust & ~flags
            self.x_adv[newly] = self.last_input[newly[attacked]].detach().cpu().to(self.x_adv.dtype)
            self.fooled |= newly
            # the library runs its attacks in order: this outcome is the first unfinished one's
            self.finished = [a for a in self.attacks if a in finished]
            self.finished.append(next(a for a in self.attacks if a not in finished))
        self.robust = flags

    def save(self) -> None:
        """The examples first, then the library's state: the state never runs ahead of them."""
        buffer = _io.BytesIO()
        torch.save({"x_adv": self.x_adv, "fooled": self.fooled, "clean": self.clean, "robust": self.robust,
                    "finished": list(self.finished), "flags": dict(self.captured.flags)}, buffer)
        write_bytes(self.examples_path, buffer.getvalue())
        self._write_state(self.robust, self.finished)

    def _write_state(self, robust: torch.Tensor, finished: list[str]) -> None:
        """pyautoattack's state file, in the form AtomicState.from_disk reads."""
        write_text(self.state_path, json.dumps({
            "_attacks_to_run": sorted(self.attacks), "path": str(self.state_path),
            "_run_attacks": sorted(finished), "_robust_flags": robust.tolist(),
            "_clean_accuracy": float(self.clean.float().mean())}))

    def with_restored_examples(self, x_adv: torch.Tensor) -> torch.Tensor:
        """The library returns the examples of its own run; add those of earlier runs."""
        if not self.restored.any():
            return x_adv
        x_adv = x_adv.clone()
        x_adv[self.restored.to(x_adv.device)] = self.x_adv[self.restored].to(x_adv.device)
        return x_adv


@torch.no_grad()
def _num_classes(model: nn.Module, x: torch.Tensor) -> int:
    return model(x[:1]).shape[1]
