"""bench/run.py keeps one block per kind of machine in RESULTS.md: writing one keeps the other."""
import sys
import types
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
run = pytest.importorskip("run")
common = pytest.importorskip("common")


def _write(kind: str, title: str, pending=()):
    report = common.Report()
    report.section(title, ["body of " + title])
    report.ratio(f"{title} ratio", 1.2, 1.5)
    info = {"device": "a " + kind, "device_type": kind, "commit": "abc"}
    args = types.SimpleNamespace(quick=False, device=kind, only=None)
    run.write_results(info, report, 1.0, args, pending=list(pending))


def test_blocks_per_device_kind(tmp_path, monkeypatch):
    monkeypatch.setattr(run, "RESULTS", tmp_path / "RESULTS.md")
    _write("cpu", "cpu one")
    text = run.RESULTS.read_text()
    assert "No GPU run yet" in text and "#### cpu one" in text
    _write("cuda", "gpu one", pending=["autoattack"])
    blocks = run.read_blocks(run.RESULTS.read_text())
    assert "#### cpu one" in blocks["cpu"] and "#### gpu one" in blocks["cuda"]
    assert "still to run when written: autoattack" in blocks["cuda"]
    assert "No GPU run yet" not in run.RESULTS.read_text()
    run.RESULTS.write_text(run.RESULTS.read_text() + "\n## By hand\n\nA section written by hand.\n")
    _write("cpu", "cpu two")
    assert run.RESULTS.read_text().endswith("## By hand\n\nA section written by hand.\n")
    blocks = run.read_blocks(run.RESULTS.read_text())
    assert "cpu one" not in blocks["cpu"] and "#### cpu two" in blocks["cpu"]
    assert "#### gpu one" in blocks["cuda"]
