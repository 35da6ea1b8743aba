"""Where the per-epoch metrics go: metrics.csv always, TensorBoard event files on request.

Every sink gets the whole history after each epoch (`write`) and is closed when training ends
(`close`). `train --log tensorboard` (or `train: {log: tensorboard}` in a config) adds the
TensorBoard sink; it needs the optional extra: pip install 'zubov-bench[tensorboard]'.
"""
from __future__ import annotations

import csv
import io as _io
from pathlib import Path
from typing import Protocol

from ..errors import UserError
from ..io import write_text

LOGS = ("csv", "tensorboard")
METRICS_FILE = "metrics.csv"
TENSORBOARD_DIR = "tensorboard"
STEP_KEY = "epoch"  # the x axis of every scalar
NOT_SCALARS = ("epoch", "stage")  # the step itself and the recipe stage's name


class MetricsSink(Protocol):
    def write(self, history: list[dict]) -> None: ...

    def close(self) -> None: ...


class CsvSink:
    """metrics.csv: the whole history, rewritten atomically after every epoch."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS_FILE

    def write(self, history: list[dict]) -> None:
        keys = list(dict.fromkeys(k for row in history for k in row))
        buf = _io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)
        write_text(self.path, buf.getvalue())

    def close(self) -> None:
        pass


class TensorBoardSink:
    """Event files in RUN/tensorboard: every numeric column of the newest row (loss terms,
    test accuracy, learning rate, epoch time) as a scalar at step = epoch."""

    def __init__(self, run_dir: Path):
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.writer = None

    def write(self, history: list[dict]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        row = history[-1]
        step = int(row[STEP_KEY])
        if self.writer is None:
            # a resumed run may have logged this epoch before it was killed: drop events >= step
            self.writer = SummaryWriter(str(self.log_dir), purge_step=step)
        for key, value in row.items():
            if key not in NOT_SCALARS and isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, float(value), step)
        self.writer.flush()  # a killed run keeps every finished epoch

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None


def make_sinks(run_dir: Path, log: str) -> list[MetricsSink]:
    """metrics.csv, plus TensorBoard for log="tensorboard" (checked here, before any training)."""
    if log not in LOGS:
        raise UserError(f"unknown --log {log!r}; use one of {', '.join(LOGS)}")
    sinks: list[MetricsSink] = [CsvSink(run_dir)]
    if log == "tensorboard":
        try:
            import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
            from torch.utils.tensorboard import SummaryWriter  # noqa: F401
        except ImportError:
            raise UserError("--log tensorboard needs the tensorboard package: "
                            "pip install 'zubov-bench[tensorboard]'") from None
        sinks.append(TensorBoardSink(run_dir))
    return sinks
