"""Multi-process data-parallel training under `torchrun` (torch.distributed + DDP).

`torchrun --nproc_per_node=N -m zubov_bench train ...` sets WORLD_SIZE, RANK and LOCAL_RANK; with
WORLD_SIZE > 1 the run joins a process group (NCCL on CUDA, gloo on CPU). Every rank draws the
same seeded permutation per epoch and takes its own disjoint slice of each global batch: a rank
trains on `batch_size // WORLD_SIZE` examples per step, so the global batch, the number of steps
and the learning-rate recipe are those of a single-process run. Gradients are averaged by
DistributedDataParallel; only rank 0 writes files.

Without a process group every helper here is a no-op that returns the single-process answer, so
a plain `zubov-bench train` runs exactly the code it ran before.
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from functools import partial

import torch
import torch.distributed as dist
from torch import nn

from ..errors import UserError

RANK_SEED_STRIDE = 7919  # ranks > 0 reseed torch's RNG with seed + stride * rank


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def rank() -> int:
    """This process's rank; from torchrun's RANK before the group exists (0 without torchrun)."""
    return dist.get_rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def launched_world_size() -> int:
    try:
        return int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not an integer") from None


@contextmanager
def process_group(device: torch.device):
    """Join the torchrun process group for the block when WORLD_SIZE > 1; else do nothing."""
    if launched_world_size() <= 1 or is_distributed():
        yield
        return
    if not dist.is_available():
        raise UserError("WORLD_SIZE > 1 but this torch build has no torch.distributed support")
    if device.type == "cuda":
        if local_rank() >= torch.cuda.device_count():
            raise UserError(f"LOCAL_RANK {local_rank()} has no GPU ({torch.cuda.device_count()} visible); "
                            "use --nproc_per_node <= the number of GPUs")
        torch.cuda.set_device(local_rank())
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device) -> torch.device:
    """Under torchrun, CUDA rank r runs on GPU LOCAL_RANK."""
    if device.type == "cuda" and is_distributed():
        return torch.device("cuda", local_rank())
    return device


def barrier() -> None:
    if is_distributed():
        dist.barrier()


# --- data ------------------------------------------------------------------------------
def per_rank_batch(batch_size: int) -> int:
    world = world_size()
    if batch_size < world:
        raise UserError(f"--batch-size {batch_size} is smaller than the {world} processes; "
                        f"each process needs at least one example per step")
    return batch_size // world


def global_batch(batch_size: int) -> int:
    """Examples per optimizer step over all ranks: batch_size, rounded down to a multiple of W."""
    return per_rank_batch(batch_size) * world_size()


def rank_batch(perm: torch.Tensor, step: int, batch_size: int) -> torch.Tensor:
    """This rank's indices for `step`. Single process: perm[step*B:(step+1)*B] (short last batch).

    With W ranks, global batch s is perm[s*G:(s+1)*G] (G = W * (B // W)) and rank r takes its
    r-th contiguous block of B // W; the last global batch wraps around to the start of the
    permutation, so every rank runs the same number of equally sized steps.
    """
    if world_size() == 1:
        return perm[step * batch_size:(step + 1) * batch_size]
    per = per_rank_batch(batch_size)
    start = (step * world_size() + rank()) * per
    return perm[torch.arange(start, start + per, device=perm.device) % len(perm)]


def mean_across_ranks(terms: dict, device: torch.device) -> dict:
    """Average the per-step metric floats over ranks (for logging; identical on every rank)."""
    if not is_distributed():
        return terms
    keys = list(terms)  # same order on every rank: the same code made the dict
    values = torch.tensor([float(terms[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return {k: float(v) / world_size() for k, v in zip(keys, values.tolist())}


# --- the model ---------------------------------------------------------------------------
class _StageLoss(nn.Module):
    """DDP hooks only `forward`; models compute their loss in `training_loss` or a stage's loss
    function, so this module's forward calls that function on the wrapped model's parameters."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, x, y):
        return loss_fn(x, y)


def stage_loss(model: nn.Module, loss_fn, device: torch.device):
    """`loss_fn` itself in a single process; under DDP, the same call with all-reduced gradients.

    find_unused_parameters=True: staged recipes train a subset of the parameters (SODEF), some
    losses skip parts of the model in some steps, and frozen parameters (requires_grad=False) are
    ignored by DDP anyway. The extra graph walk is cheap next to an ODE solve. Build it after the
    stage's setup, since setup may re-initialise parameters; DDP then copies rank 0's weights and
    buffers to every rank.
    """
    if not is_distributed():
        return loss_fn
    ids = [device.index] if device.type == "cuda" else None
    ddp = nn.parallel.DistributedDataParallel(_StageLoss(model), device_ids=ids,
                                              find_unused_parameters=True)
    return partial(ddp, loss_fn)


# --- RNG and checkpoints --------------------------------------------------------------------
def seed_rank(seed: int) -> None:
    """Ranks > 0 get their own torch RNG stream (noise, samplers); rank 0 keeps the run's stream."""
    if is_distributed() and rank() > 0:
        torch.manual_seed(seed + RANK_SEED_STRIDE * rank())


def _rng_state(device: torch.device):
    cuda = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), cuda


def checkpoint_extras(device: torch.device) -> dict:
    """Collective: every rank's RNG state, for rank 0's last.pt ({} in a single process)."""
    if not is_distributed():
        return {}
    states = [None] * world_size()
    dist.all_gather_object(states, _rng_state(device))
    return {"world_size": world_size(), "rank_rng": states}


def restore_extras(state: dict, device: torch.device, path) -> None:
    """Check a resumed run keeps its process count, and give each rank back its RNG stream."""
    saved = state.get("world_size", 1)
    if saved != world_size():
        how = f"torchrun --nproc_per_node={saved}" if saved > 1 else "a single process"
        raise UserError(f"{path} was trained with {saved} process(es), this run has {world_size()}; "
                        f"resume it with {how}")
    if not is_distributed():
        return
    cpu, cuda = state["rank_rng"][rank()]
    torch.set_rng_state(cpu)
    if cuda is not None and device.type == "cuda":
        torch.cuda.set_rng_state(cuda, device)
