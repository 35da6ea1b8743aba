"""The results store: records.jsonl (canonical), records.csv, outcomes/<id>.npz, partial/<id>/.

Every write happens under a lock file and goes through a temporary file and a rename, so two
`eval` processes sharing a folder never lose or duplicate records, and a crash never leaves a
half-written file behind. Partial (per-batch) results make long records resumable.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io as _io
import json
import shutil
import warnings
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..errors import UserError
from ..io import atomic_path, check_can_create_files, ensure_writable_dir, write_text
from ..records import Record

RECORDS = "records.jsonl"
CSV = "records.csv"
LOCK = ".records.lock"
OUTCOME_KEYS = ("index", "clean", "robust")


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = FileLock(str(self.root / LOCK))

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (re-entrant in one process); creates the folder on first write."""
        ensure_writable_dir(self.root)
        with self._lock:
            yield

    # --- reading ------------------------------------------------------------------------
    def all_records(self) -> list[Record]:
        """Every stored record, shard records included, in write order."""
        path = self.root / RECORDS
        if not path.is_file():
            return []
        out = []
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(Record.from_dict(json.loads(line)))
            except (json.JSONDecodeError, TypeError) as exc:
                warnings.warn(f"{path}:{number}: skipping unreadable record ({exc})")
        return out

    def records(self) -> list[Record]:
        """Complete records only (shard records are merged into complete ones when all arrive)."""
        return [r for r in self.all_records() if not r.shard]

    def ids(self) -> set[str]:
        return {r.id for r in self.all_records()}

    def get(self, record_id: str) -> Record | None:
        return next((r for r in self.all_records() if r.id == record_id), None)

    def outcomes(self, record_id: str) -> dict[str, np.ndarray]:
        path = self.root / "outcomes" / f"{record_id}.npz"
        if not path.is_file():
            raise UserError(f"no per-example outcomes for record {record_id} in {self.root}")
        with np.load(path) as data:
            return {k: data[k] for k in data.files}

    # --- writing ------------------------------------------------------------------------
    def put(self, record: Record, outcomes: dict[str, np.ndarray] | None, replace: bool = False) -> bool:
        """Add a record (and its outcomes); returns False if it already existed and replace is off."""
        with self.locked():
            records = self.all_records()
            exists = any(r.id == record.id for r in records)
            if exists and not replace:
                return False
            if outcomes is not None:
                self._write_outcomes(record.id, outcomes)
            records = [r for r in records if r.id != record.id] + [record]
            self._write_records(records)
            return True

    def tidy(self) -> None:
        """After a killed writer: drop its temporary files, regenerate a lagging records.csv.

        Only files written under the lock are touched, so a live writer is never disturbed.
        """
        if not (self.root / RECORDS).is_file():
            return
        with self.locked():
            for pattern in (f".{RECORDS}.*.tmp", f".{CSV}.*.tmp", "outcomes/.*.tmp"):
                for stale in self.root.glob(pattern):
                    stale.unlink(missing_ok=True)
            expected = records_csv(self.all_records())
            path = self.root / CSV
            if not path.is_file() or path.read_text() != expected:
                write_text(path, expected)

    def remove(self, record_ids) -> None:
        with self.locked():
            records = self.all_records()
            keep = [r for r in records if r.id not in set(record_ids)]
            if len(keep) != len(records):
                self._write_records(keep)

    def update_sanity(self, sanity_by_id: dict[str, dict]) -> None:
        """Replace the `sanity` field of the given records (their ids do not depend on it)."""
        with self.locked():
            records = self.all_records()
            changed = False
            for r in records:
                if r.id in sanity_by_id and r.sanity != sanity_by_id[r.id]:
                    r.sanity = sanity_by_id[r.id]
                    changed = True
            if changed:
                self._write_records(records)

    def merge_shards(self) -> list[Record]:
        """Turn every complete set of shard records into one complete record; returns the new ones."""
        with self.locked():
            records = self.all_records()
            have = {r.id for r in records}
            groups: dict[str, list[Record]] = {}
            for r in records:
                if r.shard:
                    groups.setdefault(dataclasses.replace(r, shard="").id, []).append(r)
            merged = []
            for full_id, parts in groups.items():
                if full_id in have or not _all_shards_present(parts):
                    continue
                parts = sorted(parts, key=lambda r: int(r.shard.split("/")[0]))
                outcomes = concat_outcomes([self.outcomes(p.id) for p in parts])
                full = record_from_outcomes(dataclasses.replace(parts[0], shard=""), outcomes,
                                            wall_time=sum(p.wall_time for p in parts))
                self._write_outcomes(full.id, outcomes)
                merged.append(full)
            if merged:
                self._write_records(records + merged)
            return merged

    def _write_outcomes(self, record_id: str, outcomes: dict[str, np.ndarray]) -> None:
        missing = [k for k in OUTCOME_KEYS if k not in outcomes]
        if missing:
            raise ValueError(f"outcomes lack {missing}")
        with atomic_path(self.root / "outcomes" / f"{record_id}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **outcomes)

    def _write_records(self, records: list[Record]) -> None:
        lines = [json.dumps(r.to_dict(), sort_keys=True, default=str) for r in records]
        write_text(self.root / RECORDS, "".join(line + "\n" for line in lines))
        write_text(self.root / CSV, records_csv(records))

    # --- per-batch partial results (resume inside a long record) -----------------------
    def _partial_dir(self, record_id: str) -> Path:
        return self.root / "partial" / record_id

    def save_batch(self, record_id: str, batch: int, arrays: dict[str, np.ndarray]) -> None:
        with atomic_path(self._partial_dir(record_id) / f"batch-{batch:06d}.npz") as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **arrays)

    def load_batches(self, record_id: str) -> dict[int, dict[str, np.ndarray]]:
        folder = self._partial_dir(record_id)
        out = {}
        for path in sorted(folder.glob("batch-*.npz")) if folder.is_dir() else []:
            try:
                with np.load(path) as data:
                    out[int(path.stem.split("-")[1])] = {k: data[k] for k in data.files}
            except (OSError, ValueError, EOFError):
                path.unlink(missing_ok=True)  # cannot happen with atomic writes; recompute it
        return out

    def clear_batches(self, record_id: str) -> None:
        shutil.rmtree(self._partial_dir(record_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            (self.root / "partial").rmdir()  # only when empty


def check_writable_target(path: str | Path) -> None:
    """Raise a UserError unless `path` is, or could be created as, a writable folder (creates nothing)."""
    path = Path(path).absolute()
    if path.exists() and not path.is_dir():
        raise UserError(f"output folder {path} is a file")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise UserError(f"output folder {path} is not writable")
    check_can_create_files(existing, path)


def _all_shards_present(parts: list[Record]) -> bool:
    totals = {int(r.shard.split("/")[1]) for r in parts}
    if len(totals) != 1:
        return False
    return {int(r.shard.split("/")[0]) for r in parts} == set(range(totals.pop()))


def concat_outcomes(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Join per-example arrays and sort them by dataset index (the canonical order)."""
    keys = parts[0].keys()
    joined = {k: np.concatenate([p[k] for p in parts]) for k in keys}
    order = np.argsort(joined["index"], kind="stable")
    return {k: v[order] for k, v in joined.items()}


def record_from_outcomes(record: Record, outcomes: dict[str, np.ndarray], wall_time: float) -> Record:
    """Fill n, accuracies, failures and mean NFE from per-example arrays."""
    n = len(outcomes["index"])
    nfe = outcomes.get("nfe")
    nfe = nfe[np.isfinite(nfe)] if nfe is not None else np.zeros(0)  # NaN: no ODE, or a failed solve
    mean_nfe = float(nfe.mean()) if len(nfe) else float("nan")
    failed = outcomes.get("failed")
    return dataclasses.replace(
        record, n=n,
        clean_acc=float(outcomes["clean"].mean()) if n else float("nan"),
        robust_acc=float(outcomes["robust"].mean()) if n else float("nan"),
        n_failed=int(failed.sum()) if failed is not None else 0,
        mean_nfe=mean_nfe, wall_time=round(float(wall_time), 3))


def records_csv(records: list[Record]) -> str:
    names = ["id"] + [f.name for f in dataclasses.fields(Record)]
    buf = _io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=names)
    writer.writeheader()
    for r in records:
        row = r.to_dict()
        writer.writerow({k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v
                         for k, v in row.items()})
    return buf.getvalue()
