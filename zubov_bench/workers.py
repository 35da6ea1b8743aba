"""Spawned worker processes that never outlive the command that started them."""
from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor


def spawn_pool(jobs: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=initializer,
                               initargs=initargs)


def stop_pool(pool: ProcessPoolExecutor, graceful: bool) -> None:
    """graceful: let running tasks finish. Otherwise (an error, Ctrl-C, SIGTERM) terminate the
    workers at once: every task is resumable, and waiting could take as long as the task."""
    if not graceful:
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API for this
            process.terminate()
    pool.shutdown(wait=graceful, cancel_futures=True)
