"""Spawned worker processes that never outlive the command that started them."""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
from concurrent.futures import ProcessPoolExecutor

PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>
WATCHDOG_SECONDS = 1.0


def spawn_pool(jobs: int, initializer=None, initargs: tuple = ()) -> ProcessPoolExecutor:
    return ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn"), initializer=_start_worker,
                               initargs=(os.getpid(), initializer, initargs))


def _start_worker(parent_pid: int, initializer, initargs: tuple) -> None:
    """In each worker: die with the parent, even if it is killed with SIGKILL and cannot clean up.

    Linux delivers SIGKILL to the worker when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere,
    or should that fail, a watchdog thread notices the worker's parent changing (re-parented).
    """
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass  # the watchdog below still applies
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True, name="parent-watchdog").start()
    if initializer is not None:
        initializer(*initargs)


def _watch_parent(parent_pid: int) -> None:
    while not threading.Event().wait(WATCHDOG_SECONDS):
        if os.getppid() != parent_pid:
            os._exit(1)


def stop_pool(pool: ProcessPoolExecutor, graceful: bool) -> None:
    """graceful: let running tasks finish. Otherwise (an error, Ctrl-C, SIGTERM) terminate the
    workers at once: every task is resumable, and waiting could take as long as the task."""
    if not graceful:
        for process in list((getattr(pool, "_processes", None) or {}).values()):  # no public API for this
            process.terminate()
    pool.shutdown(wait=graceful, cancel_futures=True)
