"""Device selection and bitwise-reproducible execution."""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch

from .errors import UserError


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda requested but no CUDA device is available")
    if name not in ("cpu",) and not name.startswith("cuda"):
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda")
    return torch.device(name)


@contextmanager
def deterministic_algorithms(on: bool, device: torch.device):
    """Use torch's deterministic kernels inside the block, then restore the caller's setting.

    Multi-threaded CPU kernels such as the backward of `t[index]` accumulate in an order that
    depends on thread timing, so without this a seed does not reproduce bit for bit. Ops with no
    deterministic kernel warn instead of failing.
    """
    if not on:
        yield
        return
    previous = (torch.are_deterministic_algorithms_enabled(),
                torch.is_deterministic_algorithms_warn_only_enabled())
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # cuBLAS needs it to be deterministic
    torch.use_deterministic_algorithms(True, warn_only=previous[1] if previous[0] else True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0], warn_only=previous[1])


# How this process chose its torch CPU thread count ("--threads 2", "OMP_NUM_THREADS=4", "auto: ...");
# recorded in a training run's env.json next to the count itself
_thread_choice = "torch default"


def auto_threads(cores: int | None = None, load: float | None = None) -> int:
    """Torch CPU threads that degrade gracefully when other processes want the cores.

    torch's default, one thread per core, makes every kernel wait for its slowest thread: with one
    other CPU-bound process on a 2-core machine, a Zubov-Net digits step went from 61 ms to 1,300 ms
    (issue 21). So leave one core free, and do not count cores that the one-minute load average says
    are busy: max(1, min(cores - 1, cores - round(load))). On the 2-core development machine that is
    one thread, which costs these small models little when the machine is idle (bench/RESULTS.md).
    """
    cores = cores or os.cpu_count() or 1
    if load is None:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return max(1, min(cores - 1, cores - round(load)))


def configure_threads(spec: str | int | None) -> str:
    """Set torch's CPU thread count from `--threads` and say how it was chosen.

    An explicit count wins; otherwise OMP_NUM_THREADS, when set, is left as torch read it;
    otherwise ("auto" or None) `auto_threads()`. Returns the description recorded with a run.
    """
    global _thread_choice
    text = "auto" if spec is None else str(spec).strip().lower()
    if text != "auto":
        try:
            count = int(text)
        except ValueError:
            count = 0
        if count < 1:
            raise UserError(f"--threads must be a positive integer or auto, got {spec!r}")
        torch.set_num_threads(count)
        _thread_choice = f"--threads {count}"
    elif os.environ.get("OMP_NUM_THREADS", "").strip():
        _thread_choice = f"OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS'].strip()}"
    else:
        cores, load = os.cpu_count() or 1, (os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0)
        torch.set_num_threads(auto_threads(cores, load))
        _thread_choice = f"auto ({cores} cores, load {load:.1f})"
    return _thread_choice


def thread_choice() -> str:
    """How the current torch thread count was chosen (see `configure_threads`)."""
    return _thread_choice
