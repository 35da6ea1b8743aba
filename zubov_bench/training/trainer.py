"""The training loop shared by every model: staged recipes, atomic checkpoints, exact resume."""
from __future__ import annotations

import io as _io
import json
import math
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import __version__
from ..checkpoint import safe_torch_load, save_checkpoint
from ..data import DatasetBundle
from ..device import deterministic_algorithms, resolve_device, thread_choice
from ..config import TrainConfig  # noqa: F401  (its home is config.py; re-exported here)
from ..errors import UserError
from ..io import write_bytes, write_json
from ..provenance import cpu_kind, git_state
from ..models.ode import SolverError, compile_field, cuda_graphs_enabled
from . import distributed
from .adversarial import adversarial_batch
from .loggers import make_sinks

STATE_FILE = "last.pt"
MODEL_FILE = "model.pt"


class NumericalError(UserError):
    """A NaN/Inf loss or state, or a solver failure, during training."""


def environment(device: torch.device) -> dict:
    commit, dirty = git_state(Path(__file__).parent)
    return {
        "suite_version": __version__, "torch": torch.__version__, "python": platform.python_version(),
        "platform": platform.platform(), "cpu": cpu_kind(), "device": str(device),
        "cuda_device": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "git_commit": commit, "git_dirty": dirty, "threads": torch.get_num_threads(),
        "threads_chosen_by": thread_choice(), "cuda_graphs": cuda_graphs_enabled(),
    }


@torch.no_grad()
def accuracy(model, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    model.eval()
    correct = 0
    for i in range(0, len(x), batch_size):
        correct += int((model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]).sum())
    return correct / max(len(x), 1)


def stage_epochs(fractions: list[float], epochs: int) -> list[int]:
    """Split `epochs` over stages by their fractions; every stage gets at least one epoch."""
    total = sum(fractions)
    out = [max(1, round(epochs * f / total)) for f in fractions[:-1]]
    return out + [max(1, epochs - sum(out))]


@dataclass
class Progress:
    """Everything needed to continue a run exactly where it stopped."""

    stage: int = 0
    epoch: int = 0  # global epoch index
    step_in_epoch: int = 0
    global_step: int = 0
    epoch_sums: dict = field(default_factory=dict)
    epoch_count: int = 0
    epoch_time: float = 0.0
    history: list = field(default_factory=list)


class Trainer:
    def __init__(self, model, data: DatasetBundle, cfg: TrainConfig, run_dir: Path, run_info: dict):
        cfg.validate()
        self.model, self.data, self.cfg = model, data, cfg
        self.run_dir = Path(run_dir)
        self.run_info = run_info
        self.device = distributed.rank_device(resolve_device(cfg.device))
        distributed.check_batch_size(cfg.batch_size)
        model.check_schedule(cfg.epochs)  # a recipe part that would never run is refused up front
        self.stages = model.training_stages()
        self.stage_epochs = stage_epochs([s.epoch_fraction for s in self.stages], cfg.epochs)
        self.progress = Progress()
        self.x_train, self.y_train = data.x_train.to(self.device), data.y_train.to(self.device)
        self.x_test, self.y_test = data.x_test.to(self.device), data.y_test.to(self.device)
        self.order_gen = torch.Generator().manual_seed(cfg.seed)
        self.epoch_gen_state = self.order_gen.get_state()
        self.optimizer = self.scheduler = self.loss_fn = None
        self.sinks = make_sinks(self.run_dir, cfg.log)
        distributed.seed_rank(cfg.seed)
        if cfg.compile:
            compile_field(model)

    # --- setup --------------------------------------------------------------------------
    def _stage_start_epoch(self, stage: int) -> int:
        return sum(self.stage_epochs[:stage])

    def _make_optimizer(self) -> None:
        stage = self.stages[self.progress.stage]
        params = [p for p in stage.params() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=self.cfg.lr, weight_decay=self.cfg.weight_decay)
        steps = self.stage_epochs[self.progress.stage] * self.steps_per_epoch
        self.scheduler = (torch.optim.lr_scheduler.CosineAnnealingLR(self.optimizer, T_max=max(steps, 1))
                          if self.cfg.schedule == "cosine" else None)
        self.loss_fn = distributed.stage_loss(self.model, stage.loss, self.device)

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(len(self.x_train) / self.cfg.batch_size)

    def _enter_stage(self, index: int) -> None:
        self.progress.stage = index
        self.stages[index].setup()
        self._make_optimizer()

    # --- checkpointing ------------------------------------------------------------------
    def _train_state(self) -> dict:
        return {
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler else None,
            "progress": json.loads(json.dumps(asdict(self.progress))),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
            "order_rng": self.epoch_gen_state,
            **distributed.checkpoint_extras(self.device),
        }

    def save_state(self) -> None:
        state = self._train_state()  # on every rank: it gathers their RNG states
        if distributed.is_main():
            buffer = _io.BytesIO()  # in memory: torch.save reports a full disk as a bare RuntimeError
            torch.save(state, buffer)
            write_bytes(self.run_dir / STATE_FILE, buffer.getvalue())

    def resume(self) -> None:
        path = self.run_dir / STATE_FILE
        if not path.is_file():
            raise UserError(f"nothing to resume in {self.run_dir}: no {STATE_FILE}")
        state = safe_torch_load(path)
        self.progress = Progress(**state["progress"])
        for i in range(self.progress.stage + 1):
            self.stages[i].setup()
        try:
            self.model.load_state_dict(state["model"])
        except RuntimeError as exc:
            raise UserError(f"cannot resume from {path}: it does not match the model "
                            f"({str(exc).splitlines()[0]})") from None
        self._make_optimizer()
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler and state["scheduler"]:
            self.scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["torch_rng"])
        if state["cuda_rng"] and self.device.type == "cuda":
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.epoch_gen_state = state["order_rng"]
        distributed.restore_extras(state, self.device, path)

    # --- the loop -----------------------------------------------------------------------
    def _kept(self) -> str:
        """What a numerical failure leaves behind: promise a checkpoint only when one exists."""
        if (self.run_dir / STATE_FILE).is_file():
            return f"last good checkpoint kept in {self.run_dir / STATE_FILE} (--resume {self.run_dir})"
        return f"no checkpoint had been saved yet in {self.run_dir}, so there is nothing to resume"

    def _check_finite(self, loss: torch.Tensor, where: str) -> None:
        if not torch.isfinite(loss):
            raise NumericalError(f"non-finite loss ({float(loss.detach())}) at {where}; {self._kept()}")
        bad = [n for n, p in self.model.named_parameters() if not torch.isfinite(p).all()]
        if bad:
            raise NumericalError(f"non-finite weights in {bad[0]} at {where}; {self._kept()}")

    def _step(self, xb, yb, where: str, share: float = 1.0) -> dict:
        self.model.train()
        try:
            if self.cfg.adv_eps > 0:
                seed = self.cfg.seed * 1_000_003 + self.progress.global_step
                xb = adversarial_batch(self.model, xb, yb, self.cfg.adv_eps, self.cfg.adv_steps, seed,
                                       self.cfg.adv_fraction)
            loss, terms = self.loss_fn(xb, yb)
        except SolverError as exc:
            raise NumericalError(f"{exc} at {where}; {self._kept()}") from None
        self._check_finite(loss, where)
        self.optimizer.zero_grad(set_to_none=True)
        distributed.weight_loss(loss, share).backward()
        if self.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.optimizer.step()
        if self.scheduler:
            self.scheduler.step()
        self._check_finite(loss.detach(), where)  # also catches weights broken by this step
        return {"loss": float(loss.detach()), **terms}

    def _run_epoch(self, bar) -> None:
        p = self.progress
        self.model.set_epoch(p.epoch)
        self.order_gen.set_state(self.epoch_gen_state)
        perm = torch.randperm(len(self.x_train), generator=self.order_gen).to(self.device)
        start = time.perf_counter() - p.epoch_time
        for step in range(p.step_in_epoch, self.steps_per_epoch):
            idx, share = distributed.rank_batch(perm, step, self.cfg.batch_size)
            where = f"epoch {p.epoch + 1}, step {step + 1}"
            terms = self._step(self.x_train[idx], self.y_train[idx], where, share)
            terms = distributed.mean_across_ranks(terms, share, self.device)
            for k, v in terms.items():
                p.epoch_sums[k] = p.epoch_sums.get(k, 0.0) + v
            p.epoch_count += 1
            p.step_in_epoch, p.global_step = step + 1, p.global_step + 1
            p.epoch_time = time.perf_counter() - start
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{terms['loss']:.3f}")
            if self.cfg.save_every_steps and p.global_step % self.cfg.save_every_steps == 0 \
                    and p.step_in_epoch < self.steps_per_epoch:
                self.save_state()
        self._finish_epoch()

    def _finish_epoch(self) -> None:
        p = self.progress
        row = {"epoch": p.epoch + 1, "stage": self.stages[p.stage].name, "steps": p.global_step,
               "lr": self.optimizer.param_groups[0]["lr"]}
        row.update({f"train_{k}": v / max(p.epoch_count, 1) for k, v in p.epoch_sums.items()})
        row["test_acc"] = accuracy(self.model, self.x_test, self.y_test, self.cfg.eval_batch_size)
        row["epoch_seconds"] = round(p.epoch_time, 3)
        p.history.append(row)
        p.epoch += 1
        p.step_in_epoch, p.epoch_sums, p.epoch_count, p.epoch_time = 0, {}, 0, 0.0
        self.epoch_gen_state = self.order_gen.get_state()
        if p.epoch == self._stage_start_epoch(p.stage + 1) and p.stage + 1 < len(self.stages):
            self._enter_stage(p.stage + 1)
        self.write_metrics()
        self.save_state()
        self.log(row)

    def log(self, row: dict) -> None:
        import click

        if not distributed.is_main():
            return
        parts = [f"epoch {row['epoch']:>3}/{self.cfg.epochs} [{row['stage']}]"]
        parts += [f"{k[6:]}={v:.4g}" for k, v in row.items() if k.startswith("train_")]
        parts.append(f"test_acc={row['test_acc']:.4f} ({row['epoch_seconds']:.1f}s)")
        click.echo("  ".join(parts), err=True)

    def write_metrics(self) -> None:
        if not distributed.is_main():
            return
        for sink in self.sinks:
            sink.write(self.progress.history)

    def fit(self) -> dict:
        from tqdm import tqdm

        self.model.to(self.device)
        if self.optimizer is None:
            self._enter_stage(0)
        total = self.cfg.epochs * self.steps_per_epoch
        bar = tqdm(total=total, initial=self.progress.global_step,
                   disable=not (self.cfg.progress and distributed.is_main()),
                   desc="train", leave=False, dynamic_ncols=True)
        try:
            with deterministic_algorithms(self.cfg.deterministic, self.device):
                while self.progress.epoch < self.cfg.epochs:
                    self._run_epoch(bar)
        finally:
            bar.close()
            for sink in self.sinks:
                sink.close()
        return self.finish()

    def finish(self) -> dict:
        final = self.progress.history[-1]
        summary = {**self.run_info, "test_acc": final["test_acc"], "epochs": self.cfg.epochs,
                   "train_seconds": round(sum(r["epoch_seconds"] for r in self.progress.history), 2)}
        digest = self._save_model(summary) if distributed.is_main() else None
        distributed.barrier()  # when any rank returns, model.pt is there
        return {**summary, "sha256": digest}

    def _save_model(self, summary: dict) -> str:
        self.model.cpu()
        digest = save_checkpoint(self.run_dir / MODEL_FILE, self.model, extra=summary)
        write_json(self.run_dir / "summary.json", {**summary, "sha256": digest})
        self.model.to(self.device)
        return digest
