"""The results store: records.jsonl (canonical), records.csv, outcomes/<id>.npz, partial/<id>/.

Every write happens under a lock file and goes through a temporary file and a rename, so two
`eval` processes sharing a folder never lose or duplicate records, and a crash never leaves a
half-written file behind. Partial (per-batch) results make long records resumable.

Integrity: every line of records.jsonl is checked against the Record schema on read (a bad line is
refused, naming file and line); each record holds the sha256 of its outcomes file and each partial
folder a manifest of its batches' sha256, checked on read. A damaged batch is recomputed; a damaged
outcomes file is refused with the repair (`--force`), so nothing derived from it is built on it.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io as _io
import json
import re
import shutil
from pathlib import Path

import numpy as np
from filelock import FileLock

from ..errors import UserError
from ..io import check_can_create_files, ensure_writable_dir, sha256_bytes, write_bytes, write_json, write_text
from ..records import Record, is_attack_flag

RECORDS = "records.jsonl"
CSV = "records.csv"
LOCK = ".records.lock"
OUTCOME_KEYS = ("index", "clean", "robust")
BATCH_KEYS = OUTCOME_KEYS + ("wall",)
BATCH_NAME = re.compile(r"batch-(\d{6})\.npz")
MANIFEST = "sha256.json"  # in each partial folder: batch file name -> sha256 of its bytes
WORK_DIR = "attack-state"  # in each partial folder: an attack's own resumable state (AutoAttack)


class ResultsStore:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self._lock = FileLock(str(self.root / LOCK))
        self._cache: tuple | None = None  # (file signature, records, records by id)

    @contextlib.contextmanager
    def locked(self):
        """Hold the folder's lock (re-entrant in one process); creates the folder on first write."""
        ensure_writable_dir(self.root)
        with self._lock:
            self._cache = None  # a writer decides on the file as it is now, never on a remembered read
            yield

    # --- reading ------------------------------------------------------------------------
    def all_records(self) -> list[Record]:
        """Every stored record, shard records included, in write order."""
        return list(self._parsed()[0])

    def _parsed(self) -> tuple[list[Record], dict[str, Record]]:
        """records.jsonl parsed, and indexed by id; re-read only when the file changed.

        Every write replaces the file by a rename, so its inode, mtime and size identify one
        content; a table over a large store asks for records hundreds of times."""
        path = self.root / RECORDS
        try:
            stat = path.stat()
        except FileNotFoundError:
            return [], {}
        signature = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        if self._cache is None or self._cache[0] != signature:
            records = self._read(path)
            self._cache = (signature, records, {r.id: r for r in records})
        return self._cache[1], self._cache[2]

    @staticmethod
    def _read(path: Path) -> list[Record]:
        out = []
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise UserError(f"{path}: not UTF-8 text (byte {exc.start}); the results store is damaged") from None
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append(Record.from_dict(json.loads(line)))
            except ValueError as exc:  # JSONDecodeError is one
                raise UserError(f"{path}:{number}: not a valid record ({str(exc).splitlines()[0]}); "
                                "delete or repair that line (the other lines are intact)") from None
        return out

    def records(self) -> list[Record]:
        """Complete records only (shard records are merged into complete ones when all arrive)."""
        return [r for r in self.all_records() if not r.shard]

    def ids(self) -> set[str]:
        return {r.id for r in self.all_records()}

    def get(self, record_id: str) -> Record | None:
        return self._parsed()[1].get(record_id)

    def outcomes(self, record_id: str) -> dict[str, np.ndarray]:
        """The record's per-example arrays, checked against the hash stored in the record."""
        path = self.root / "outcomes" / f"{record_id}.npz"
        record = self.get(record_id)
        if not path.is_file():
            raise UserError(f"no per-example outcomes for record {record_id} in {self.root}")
        data = path.read_bytes()
        problem = None
        if record is not None and record.outcomes_sha256 and sha256_bytes(data) != record.outcomes_sha256:
            problem = "its sha256 differs from the one stored in the record"
        arrays = None if problem else _load_npz(data, OUTCOME_KEYS)
        if arrays is None or problem:
            what = f"{record.perturbation} {record.threat} {record.severity:g} on {record.checkpoint}" \
                if record else "not in records.jsonl"
            raise UserError(f"record {record_id} ({what}): outcomes file {path} is damaged "
                            f"({problem or 'not a readable outcomes archive'}); re-run that evaluation "
                            "with --force to recompute it")
        return arrays

    # --- writing ------------------------------------------------------------------------
    def put(self, record: Record, outcomes: dict[str, np.ndarray] | None, replace: bool = False) -> bool:
        """Add a record (and its outcomes); returns False if it already existed and replace is off."""
        with self.locked():
            records = self.all_records()
            exists = any(r.id == record.id for r in records)
            if exists and not replace:
                return False
            if outcomes is not None:
                record = dataclasses.replace(record, outcomes_sha256=self._write_outcomes(record.id, outcomes))
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
            records = self.all_records()
            self._write_csv(records)
            done = {r.id for r in records}
            for folder in (self.root / "partial").glob("*") if (self.root / "partial").is_dir() else []:
                if folder.name.split("-b")[0] in done:  # the record was finished: its batches are not needed
                    shutil.rmtree(folder, ignore_errors=True)

    def remove(self, record_ids) -> None:
        """Drop records and their outcomes files (records.jsonl first: a kill in between leaves
        an unreferenced file, never a record without its outcomes)."""
        record_ids = set(record_ids)
        with self.locked():
            records = self.all_records()
            keep = [r for r in records if r.id not in record_ids]
            if len(keep) != len(records):
                self._write_records(keep)
            for record_id in record_ids:
                (self.root / "outcomes" / f"{record_id}.npz").unlink(missing_ok=True)

    def update_sanity(self, sanity_by_id: dict[str, dict]) -> None:
        """Replace the `sanity` field of the given records (their ids do not depend on it)."""
        with self.locked():
            records = self.all_records()
            updated = [dataclasses.replace(r, sanity=sanity_by_id[r.id])
                       if r.id in sanity_by_id and r.sanity != sanity_by_id[r.id] else r for r in records]
            if any(new is not old for new, old in zip(updated, records)):
                self._write_records(updated)

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
                flags = {k: v for p in parts for k, v in p.sanity.items() if is_attack_flag(k)}
                full = record_from_outcomes(dataclasses.replace(parts[0], shard="", sanity=flags), outcomes,
                                            wall_time=sum(p.wall_time for p in parts))
                full.outcomes_sha256 = self._write_outcomes(full.id, outcomes)
                merged.append(full)
            if merged:
                self._write_records(records + merged)
            return merged

    def _write_outcomes(self, record_id: str, outcomes: dict[str, np.ndarray]) -> str:
        """Write outcomes/<id>.npz; returns the sha256 the record keeps of it."""
        missing = [k for k in OUTCOME_KEYS if k not in outcomes]
        if missing:
            raise ValueError(f"outcomes lack {missing}")
        data = _npz_bytes(outcomes)
        write_bytes(self.root / "outcomes" / f"{record_id}.npz", data)
        return sha256_bytes(data)

    def _write_records(self, records: list[Record]) -> None:
        lines = [json.dumps(r.to_dict(), sort_keys=True, default=str) for r in records]
        write_text(self.root / RECORDS, "".join(line + "\n" for line in lines))
        self._write_csv(records)

    def _write_csv(self, records: list[Record]) -> None:
        """records.csv, rewritten only when its bytes change (csv rows end in \\r\\n: compare bytes)."""
        expected = records_csv(records)
        path = self.root / CSV
        if not path.is_file() or path.read_bytes() != expected.encode():
            write_text(path, expected)

    # --- per-batch partial results (resume inside a long record) -----------------------
    def _partial_dir(self, record_id: str) -> Path:
        return self.root / "partial" / record_id

    def save_batch(self, record_id: str, batch: int, arrays: dict[str, np.ndarray]) -> None:
        """Write one batch, then its sha256 into the folder's manifest (a batch without one is redone)."""
        folder = self._partial_dir(record_id)
        name = f"batch-{batch:06d}.npz"
        data = _npz_bytes(arrays)
        write_bytes(folder / name, data)
        with self.locked():  # two writers of one record must not lose each other's manifest entries
            manifest = self._manifest(folder)
            manifest[name] = sha256_bytes(data)
            write_json(folder / MANIFEST, manifest)

    def work_dir(self, record_id: str) -> Path:
        """A folder where an attack keeps its state inside one batch; removed with the batches."""
        return self._partial_dir(record_id) / WORK_DIR

    def load_batches(self, record_id: str) -> dict[int, dict[str, np.ndarray]]:
        """The record's verified batches; anything else in its folder (a batch whose hash is not the
        manifest's, a foreign file or folder, other keys) is removed, so the batch is recomputed."""
        folder = self._partial_dir(record_id)
        if not folder.is_dir():
            return {}
        manifest = self._manifest(folder)
        out = {}
        for path in sorted(folder.iterdir()):
            if path.name in (MANIFEST, WORK_DIR) or path.name.startswith(".") and path.name.endswith(".tmp"):
                continue
            match = BATCH_NAME.fullmatch(path.name)
            arrays = None
            if match and path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if manifest.get(path.name) == sha256_bytes(data):
                    arrays = _load_npz(data, BATCH_KEYS)
            if arrays is None:
                _remove(path)
            else:
                out[int(match.group(1))] = arrays
        return out

    @staticmethod
    def _manifest(folder: Path) -> dict[str, str]:
        try:
            manifest = json.loads((folder / MANIFEST).read_text())
        except (OSError, ValueError):
            return {}  # no manifest: no batch is trusted
        return manifest if isinstance(manifest, dict) else {}

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


def _npz_bytes(arrays: dict[str, np.ndarray]) -> bytes:
    buffer = _io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _load_npz(data: bytes, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
    """Plain arrays (no pickles) with at least `keys`, one entry per example; None if not that."""
    try:
        with np.load(_io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except Exception:  # a damaged zip raises BadZipFile, ValueError, OSError, EOFError, KeyError...
        return None
    if any(k not in arrays for k in keys):
        return None
    lengths = {len(v) for k, v in arrays.items() if k != "wall" and v.ndim}
    return arrays if len(lengths) <= 1 else None


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
