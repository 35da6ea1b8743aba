"""Reading the results store: records only, never a re-run."""
from __future__ import annotations

from pathlib import Path

from ..errors import UserError
from ..evaluation.store import ResultsStore
from ..evaluation.worst_case import stale_worst_cases
from ..records import Record


def load_records(results_dir: str | Path) -> list[Record]:
    """Complete records of a results folder; a line that is not a record is refused (UserError)."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise UserError(f"results folder not found: {results_dir}")
    records = ResultsStore(results_dir).records()
    if not records:
        raise UserError(f"no complete records in {results_dir}")
    stale = stale_worst_cases(records)
    if stale:
        r = stale[0]
        raise UserError(f"{results_dir}: the worst case of {r.checkpoint} at {r.threat} {r.severity:g} is stale "
                        f"(its members are not the attack records of that cell; {len(stale)} such record(s)); "
                        "re-run `zubov-bench eval` on that checkpoint, with --force if it reports a damaged outcome")
    return records
