"""Multi-process data-parallel training under `torchrun` (torch.distributed + DDP).

`torchrun --nproc_per_node=N -m zubov_bench train ...` sets WORLD_SIZE, RANK and LOCAL_RANK; with
WORLD_SIZE > 1 the run joins a process group (NCCL on CUDA, gloo on CPU). Every rank draws the
same seeded permutation per epoch, cuts each batch of `batch_size` examples into WORLD_SIZE
disjoint parts and trains on its own part (about batch_size // WORLD_SIZE examples), so the
batches, the number of steps and the learning-rate recipe are those of a single-process run.
DistributedDataParallel averages the gradients; only rank 0 writes files.

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
        dist.init_process_group("nccl", device_id=torch.device("cuda", local_rank()))
    else:
        dist.init_process_group("gloo")
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


@contextmanager
def main_first():
    """Rank 0 runs the block first (e.g. a dataset download), then the other ranks."""
    if not is_main():
        barrier()
    yield
    if is_main():
        barrier()


# --- data ------------------------------------------------------------------------------
def check_batch_size(batch_size: int) -> None:
    if batch_size < world_size():
        raise UserError(f"--batch-size {batch_size} is smaller than the {world_size()} processes; "
                        f"each process needs at least one example per step")


def rank_batch(perm: torch.Tensor, step: int, batch_size: int) -> tuple[torch.Tensor, float]:
    """This rank's indices for `step`, and its share of the step's examples.

    Every rank cuts the same batch perm[step*B:(step+1)*B] that a single process would train
    on into W near-equal parts (sizes differ by at most one) and takes part `rank`. A rank left
    without an example (a last batch shorter than W) gets a stand-in example with share 0, so
    all ranks run the same steps.
    """
    batch = perm[step * batch_size:(step + 1) * batch_size]
    if world_size() == 1:
        return batch, 1.0
    mine = torch.tensor_split(batch, world_size())[rank()]
    share = len(mine) / len(batch)
    return (mine if len(mine) else batch[:1]), share


def weight_loss(loss: torch.Tensor, share: float) -> torch.Tensor:
    """Scale this rank's mean loss so that DDP's gradient average is the gradient of the mean
    loss over the whole batch (exact for per-example means, whatever the part sizes)."""
    return loss * (share * world_size()) if is_distributed() else loss


def mean_across_ranks(terms: dict, share: float, device: torch.device) -> dict:
    """The batch-wide mean of the per-step metric floats (for logging; the same on every rank)."""
    if not is_distributed():
        return terms
    keys = list(terms)  # same order on every rank: the same code made the dict
    values = torch.tensor([float(terms[k]) * share for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(values)
    return dict(zip(keys, values.tolist()))


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
