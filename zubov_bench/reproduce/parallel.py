"""A small task scheduler: training runs, checkpoint evaluations and RoA figures, by priority,
each once the tasks it needs have finished, in this process or in worker processes.

With one job everything runs here, one task at a time. With more, spawned workers (each with
the same torch thread count) run the tasks, and `on_done` sees each result in this process as
it arrives, so the bookkeeping stays in one place and may add new tasks (an evaluation once its
checkpoint exists). Every task is resumable on its own, so a crash or a kill of any worker loses
at most the tasks in flight.
"""
from __future__ import annotations

from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, Callable

from ..workers import spawn_pool, stop_pool


@dataclass
class Task:
    name: str
    work: Callable  # module-level (picklable): work(arg) in a worker, work(arg, log=log) here
    arg: Any
    priority: float = 0.0  # higher first among ready tasks; ties in submission order
    after: tuple[str, ...] = ()  # names of tasks that must finish first


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class Scheduler:
    def __init__(self, jobs: int, threads: int, log: Callable[[str], None]):
        self.jobs, self.threads, self.log = jobs, threads, log
        self._pool: ProcessPoolExecutor | None = None

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = spawn_pool(self.jobs, _init_worker, (self.threads,))
        return self._pool

    def run(self, tasks: list[Task], on_done: Callable[[Task, Any], list[Task] | None]) -> None:
        """Run every task (and those `on_done` adds) once its `after` tasks have finished."""
        pending, done, running = list(tasks), set(), {}
        try:
            while pending or running:
                ready = sorted((t for t in pending if set(t.after) <= done), key=lambda t: -t.priority)
                if not ready and not running:
                    raise RuntimeError(f"tasks wait on tasks that never ran: {[t.name for t in pending]}")
                if self.jobs <= 1:
                    task = ready[0]
                    pending.remove(task)
                    finished, error = [(task, task.work(task.arg, log=self.log))], None
                else:
                    for task in ready[: self.jobs - len(running)]:
                        pending.remove(task)
                        running[self._executor().submit(task.work, task.arg)] = task
                    finished, error = self._collect(running)
                for task, result in finished:
                    done.add(task.name)
                    pending += on_done(task, result) or []
                if self.jobs > 1 and error is not None:
                    raise error
        except BaseException:
            self.close(graceful=False)
            raise
        self.close()

    @staticmethod
    def _collect(running: dict) -> tuple[list[tuple[Task, Any]], BaseException | None]:
        """Wait for at least one task: (finished tasks with their results, a worker's error or None)."""
        finished, _ = wait(running, return_when=FIRST_COMPLETED)
        tasks = [(running.pop(f), f) for f in finished]
        error = next((f.exception() for _, f in tasks if f.exception() is not None), None)
        return [(task, f.result()) for task, f in tasks if f.exception() is None], error

    def close(self, graceful: bool = True) -> None:
        if self._pool is not None:
            stop_pool(self._pool, graceful)
            self._pool = None
