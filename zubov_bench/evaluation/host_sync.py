"""Count the operations that make the host wait for the device (host synchronisations), on any device.

On a GPU, an operation whose result the host must read (`.item()`, `bool(t)`, `int(t)`), whose
output shape depends on the data (`nonzero`, `masked_select`, indexing with a boolean mask), or a
blocking copy between host and device stalls the Python thread until the queued kernels finish, so
every such operation in an attack iteration costs a full round trip. On a CPU nothing waits, but
the same operations are dispatched, so counting them here says how many round trips the loop will
make on a GPU; `torch.cuda.set_sync_debug_mode("warn")` confirms it on the device itself.

Known blind spots on a CPU: `.cpu()`, `.numpy()` and `.tolist()` of a CPU tensor reach no torch
operator (they are no-ops there), so the counter wraps those three methods while it is active and
counts every call, including calls on tensors that would live on the host in a GPU run too (a
small over-count, never an under-count). A copy between devices is counted only when the devices
differ, that is on a GPU.

    with HostSyncCounter() as syncs:
        attack(...)
    print(syncs.total, dict(syncs.counts))
"""
from __future__ import annotations

from collections import Counter
from typing import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode

aten = torch.ops.aten
# the host reads the result: item(), bool(), int(), float() of a tensor, torch.equal
HOST_READS = {aten._local_scalar_dense.default, aten.equal.default, aten.is_nonzero.default}
# the output's shape depends on the data, so the host must learn it before allocating
DATA_DEPENDENT_SHAPE = {aten.nonzero.default, aten.masked_select.default, aten.argwhere.default,
                        aten._unique2.default, aten.unique_dim.default, aten.unique_consecutive.default,
                        aten.repeat_interleave.Tensor}
# these take boolean masks among their indices; with a mask they call nonzero on the device
MASK_INDEXING = {aten.index.Tensor, aten.index_put.default, aten.index_put_.default,
                 aten._index_put_impl_.default}
COPIES = {aten._to_copy.default, aten.copy_.default}
PYTHON_READS = ("cpu", "numpy", "tolist")  # no-ops on a CPU tensor: wrapped while counting


class HostSyncCounter(TorchDispatchMode):
    """A context manager counting host synchronisations by operator name (`counts`, `total`)."""

    def __init__(self):
        super().__init__()
        self.counts: Counter[str] = Counter()
        self._saved: dict[str, Callable] = {}

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = self._sync_name(func, args, kwargs)
        if name:
            self.counts[name] += 1
        return func(*args, **kwargs)

    @staticmethod
    def _sync_name(func, args, kwargs) -> str | None:
        if func in HOST_READS or func in DATA_DEPENDENT_SHAPE:
            return func.__name__
        if func in MASK_INDEXING:
            indices = args[1] if len(args) > 1 else kwargs.get("indices", ())
            if any(isinstance(i, torch.Tensor) and i.dtype in (torch.bool, torch.uint8) for i in indices or ()):
                return f"{func.__name__} (boolean mask)"
            return None
        if func in COPIES:
            source = args[1] if func is aten.copy_.default else args[0]
            target = args[0].device if func is aten.copy_.default else kwargs.get("device") or source.device
            if isinstance(source, torch.Tensor) and torch.device(target) != source.device:
                return f"{func.__name__} ({source.device.type} -> {torch.device(target).type})"
        return None

    def __enter__(self):
        for method in PYTHON_READS:
            original = getattr(torch.Tensor, method)
            self._saved[method] = original
            setattr(torch.Tensor, method, self._counting(method, original))
        return super().__enter__()

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            for method, original in self._saved.items():
                setattr(torch.Tensor, method, original)
            self._saved.clear()

    def _counting(self, method: str, original: Callable) -> Callable:
        counts = self.counts

        def wrapped(tensor, *args, **kwargs):
            counts[f"Tensor.{method}"] += 1
            return original(tensor, *args, **kwargs)
        return wrapped


def syncs_per_iteration(run: Callable[[int], object], iterations: tuple[int, int] = (2, 6)) -> tuple[float, Counter]:
    """Host synchronisations per iteration of a loop: `run(n)` runs it for n iterations.

    Runs it for both counts in `iterations` (after one untimed warm-up run, so that one-time
    work such as a cached solver grid is not counted) and returns the difference per extra
    iteration, with the per-operator difference, so that the fixed cost of a call (a clean
    prediction, the first random start) cancels out.
    """
    low, high = iterations
    run(low)
    counted = []
    for n in (low, high):
        with HostSyncCounter() as syncs:
            run(n)
        counted.append(syncs.counts)
    diff = Counter({k: counted[1][k] - counted[0][k] for k in set(counted[0]) | set(counted[1])})
    diff = Counter({k: v for k, v in diff.items() if v})
    return sum(diff.values()) / (high - low), diff
