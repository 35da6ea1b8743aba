"""Independent units of work (a training run, a checkpoint's evaluation) in worker processes.

With one job everything runs in this process, in order. With more, a pool of spawned workers
(each with the same torch thread count) runs the units, and `on_done` sees each result in
this process as it arrives, so the bookkeeping stays in one place. Every unit is resumable on
its own, so a crash or a kill of any worker loses at most the units in flight.
"""
from __future__ import annotations

import multiprocessing
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from typing import Callable


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class UnitRunner:
    def __init__(self, jobs: int, threads: int):
        self.jobs, self.threads = jobs, threads
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.jobs, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_init_worker, initargs=(self.threads,))
        return self._pool

    def run(self, work: Callable, items: list, on_done: Callable, log: Callable[[str], None]) -> None:
        """`work(item)` in a worker (or `work(item, log=log)` here with one job); `on_done(item, result)`."""
        if self.jobs <= 1 or len(items) <= 1:
            for item in items:
                on_done(item, work(item, log=log))
            return
        pool = self._executor()
        futures = {pool.submit(work, item): item for item in items}
        pending = set(futures)
        while pending:
            finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
            failed = [f for f in finished if f.exception() is not None]
            for future in finished:
                if future.exception() is None:
                    on_done(futures[future], future.result())
            if failed:
                for future in pending:
                    future.cancel()
                raise failed[0].exception()

    def close(self, cancel: bool = False) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
