"""Reading the results store: records only, never a re-run."""
from __future__ import annotations

import json
from pathlib import Path

from ..errors import UserError
from ..records import Record


def load_records(results_dir: str | Path) -> list[Record]:
    """Complete records of a results folder, through the evaluation's ResultsStore when present."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    try:
        from ..evaluation import ResultsStore
    except ImportError:
        records = _read_jsonl(results_dir / "records.jsonl")
    else:
        records = ResultsStore(results_dir).records()
    if not records:
        raise UserError(f"no complete records in {results_dir}")
    return records


def _read_jsonl(path: Path) -> list[Record]:
    """Fallback reader: later lines replace earlier ones with the same id; shards are skipped."""
    if not path.is_file():
        raise UserError(f"no records file {path}")
    by_id: dict[str, Record] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = Record.from_dict(json.loads(line))
        except (ValueError, TypeError) as exc:
            raise UserError(f"{path}:{number}: not a valid record ({exc})") from None
        if not record.shard:
            by_id[record.id] = record
    return list(by_id.values())
