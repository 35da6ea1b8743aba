"""`<out>/reproduce.json`: what a reproduce run has finished, and how long each invocation took.

Written atomically after every unit of work, so a killed run loses at most the unit in flight.
"""
from __future__ import annotations

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

from ..io import write_json

STATE_FILE = "reproduce.json"


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


class RunState:
    def __init__(self, out: Path, preset: str, command: str):
        self.path = Path(out) / STATE_FILE
        self.data = self._read()
        if self.data.get("preset") not in (None, preset):
            from ..errors import UserError

            raise UserError(f"{out} holds a reproduce run of preset {self.data['preset']!r}; "
                            f"choose another --out for preset {preset!r}")
        self.data.update(preset=preset)
        self.data.setdefault("evaluated", {})
        self.data.setdefault("figures", {})
        self.invocations = self.data.setdefault("invocations", [])
        self._start = time.perf_counter()
        self.current = {"command": command, "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        "wall_seconds": 0.0, "phases": {}, "finished": False, "load_start": load_average()}
        self.invocations.append(self.current)

    def _read(self) -> dict:
        if not self.path.is_file():
            return {}
        try:
            data = json.loads(self.path.read_text())
        except json.JSONDecodeError:
            return {}  # cannot happen with atomic writes; start the bookkeeping afresh
        return data if isinstance(data, dict) else {}

    def save(self) -> None:
        self.current["wall_seconds"] = round(time.perf_counter() - self._start, 1)
        write_json(self.path, self.data)

    def add_phase_time(self, phase: str, seconds: float) -> None:
        phases = self.current["phases"]
        phases[phase] = round(phases.get(phase, 0.0) + seconds, 1)

    def finish(self) -> None:
        self.current.update(finished=True, load_end=load_average())
        self.save()

    @property
    def total_wall_seconds(self) -> float:
        return round(sum(i.get("wall_seconds", 0.0) for i in self.invocations), 1)

    # --- evaluation groups -------------------------------------------------------------
    def evaluated(self, key: str, stored_ids: set[str]) -> bool:
        """True if this group finished and all its records are still in the store."""
        entry = self.data["evaluated"].get(key)
        return bool(entry) and set(entry["records"]) <= stored_ids

    def mark_evaluated(self, key: str, run: str, record_ids: list[str]) -> None:
        # the commit of the code that computed these records (the README names it)
        self.data["evaluated"][key] = {"run": run, "records": record_ids, "commit": self.current.get("commit")}
        self.save()

    def mark_rechecked(self, run: str, sha256: str) -> None:
        """`--recheck` recomputed the worst cases and sanity checks of this run's records."""
        self.data.setdefault("rechecked", {})[run] = {"sha256": sha256, "commit": self.current.get("commit")}
        self.save()

    def set_provenance(self, commit: str | None, dirty: bool, machine: str) -> None:
        """The code and the processor of this invocation (a store resumed elsewhere names both)."""
        self.current.update(commit=commit, dirty=dirty, machine=machine)

    # --- figures -----------------------------------------------------------------------
    def figure_done(self, name: str, sha: str, files: list[Path]) -> bool:
        return self.data["figures"].get(name) == sha and all(Path(f).is_file() for f in files)

    def mark_figure(self, name: str, sha: str) -> None:
        self.data["figures"][name] = sha
        self.save()
