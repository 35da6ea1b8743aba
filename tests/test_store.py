"""The results store: skip existing records, atomic writes under a lock, shard merge, partial batches."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from zubov_bench.errors import UserError
from zubov_bench.evaluation.store import ResultsStore, check_writable_target
from zubov_bench.records import Record

WRITER = """
import sys, numpy as np
from zubov_bench.evaluation.store import ResultsStore
from zubov_bench.records import Record
store = ResultsStore(sys.argv[1])
start, stop = int(sys.argv[2]), int(sys.argv[3])
for i in range(start, stop):
    r = Record(model="m", method="m", dataset="d", checkpoint="c", checkpoint_sha256="s", train_seed=0,
               perturbation="p", threat="linf", severity=i / 1000, seed=0, n=3, clean_acc=1.0, robust_acc=0.5)
    store.put(r, {"index": np.arange(3), "clean": np.ones(3, bool), "robust": np.array([1, 0, 1], bool)})
    print(i, flush=True)
"""


def make_record(severity=0.1, shard="", **kw) -> Record:
    base = dict(model="node", method="node", dataset="digits", checkpoint="x.pt", checkpoint_sha256="abc",
                train_seed=0, perturbation="pgd", threat="linf", severity=severity, seed=0,
                params={"n_samples": 6}, shard=shard)
    return Record(**{**base, **kw})


def outcomes(index, clean, robust):
    return {"index": np.asarray(index, np.int64), "clean": np.asarray(clean, bool),
            "robust": np.asarray(robust, bool), "failed": np.zeros(len(index), bool),
            "nfe": np.full(len(index), 40.0, np.float32)}


def assert_store_intact(store: ResultsStore, csv_may_lag: bool = False) -> list[Record]:
    """Every line parses, ids are unique, every record has loadable outcomes, the CSV matches.

    The CSV is derived from the jsonl; a kill between the two renames leaves it one record
    behind (never corrupt), and a kill leaves its hidden temporary file, until `tidy()`.
    """
    lines = (store.root / "records.jsonl").read_text().splitlines()
    records = [Record.from_dict(json.loads(line)) for line in lines]
    ids = [r.id for r in records]
    assert len(ids) == len(set(ids))
    for r in records:
        assert len(store.outcomes(r.id)["index"]) == r.n
    csv_rows = (store.root / "records.csv").read_text().strip().splitlines()
    assert len(csv_rows) - 1 in ((len(records), len(records) - 1) if csv_may_lag else (len(records),))
    if not csv_may_lag:
        assert not list(store.root.glob("**/.*.tmp")), "a temporary file was left behind"
    return records


def test_put_skips_existing_and_replaces_on_request(tmp_path):
    store = ResultsStore(tmp_path / "out")
    rec = make_record(n=4, clean_acc=0.75, robust_acc=0.25)
    assert store.put(rec, outcomes([3, 1, 2, 0], [1, 1, 0, 1], [1, 0, 0, 0]))
    assert not store.put(dataclasses.replace(rec, robust_acc=0.5), None)
    assert store.get(rec.id).robust_acc == 0.25
    assert store.put(dataclasses.replace(rec, robust_acc=0.5), None, replace=True)
    assert [r.robust_acc for r in store.records()] == [0.5]
    assert store.outcomes(rec.id)["robust"].tolist() == [True, False, False, False]
    assert_store_intact(store)
    with pytest.raises(UserError):
        store.outcomes("missing")


def test_failed_write_leaves_previous_state(tmp_path, monkeypatch):
    """A crash between writing the temporary file and renaming it changes nothing on disk."""
    store = ResultsStore(tmp_path)
    store.put(make_record(0.1, n=2), outcomes([0, 1], [1, 1], [1, 0]))
    before = (tmp_path / "records.jsonl").read_bytes()

    def crash(*args):
        raise OSError("simulated crash")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        store.put(make_record(0.2, n=2), outcomes([0, 1], [1, 1], [0, 0]))
    monkeypatch.undo()
    assert (tmp_path / "records.jsonl").read_bytes() == before
    assert [r.severity for r in assert_store_intact(store)] == [0.1]


def test_survives_sigkill_mid_write(tmp_path):
    """A real writer process killed at random points never leaves a corrupt store."""
    out = tmp_path / "out"
    for delay in (0.0, 0.07):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), "0", "100000"],
                                stdout=subprocess.PIPE, text=True)
        for _ in range(3):  # let it write a few records first
            assert proc.stdout.readline(), "writer died early"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
        store = ResultsStore(out)
        records = assert_store_intact(store, csv_may_lag=True)
        assert len(records) >= 3
        store.tidy()
        assert_store_intact(store)


def test_two_concurrent_writers_lose_and_duplicate_nothing(tmp_path):
    out = tmp_path / "out"
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(out), a, b], stdout=subprocess.DEVNULL)
             for a, b in (("0", "30"), ("15", "45"))]
    assert all(p.wait(timeout=300) == 0 for p in procs)
    records = assert_store_intact(ResultsStore(out))
    assert sorted(round(r.severity * 1000) for r in records) == list(range(45))


def test_merge_shards_builds_the_complete_record(tmp_path):
    store = ResultsStore(tmp_path)
    parts = [(make_record(shard="0/2"), outcomes([5, 1, 9], [1, 1, 0], [1, 0, 0])),
             (make_record(shard="1/2"), outcomes([4, 0, 2], [1, 1, 1], [1, 1, 0]))]
    store.put(*parts[0])
    assert store.merge_shards() == [] and store.records() == []
    store.put(*parts[1])
    (merged,) = store.merge_shards()
    assert merged.id == make_record().id and merged.shard == ""
    assert (merged.n, merged.clean_acc, merged.robust_acc, merged.mean_nfe) == (6, 5 / 6, 3 / 6, 40.0)
    out = store.outcomes(merged.id)
    assert out["index"].tolist() == [0, 1, 2, 4, 5, 9]
    assert out["robust"].tolist() == [True, False, False, True, True, False]
    assert store.merge_shards() == []  # idempotent
    assert [r.id for r in store.records()] == [merged.id]


def test_partial_batches_round_trip(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_batch("rec", 2, {**outcomes([0, 1, 2], [1, 1, 0], [1, 0, 0]), "wall": np.array(1.5)})
    store.save_batch("rec", 0, {**outcomes([3, 4], [1, 1], [1, 1]), "wall": np.array(0.5)})
    batches = store.load_batches("rec")
    assert sorted(batches) == [0, 2] and batches[0]["index"].tolist() == [3, 4]
    store.clear_batches("rec")
    assert store.load_batches("rec") == {}
    assert not (tmp_path / "partial").exists()


def test_check_writable_target(tmp_path):
    check_writable_target(tmp_path / "new" / "deeper")  # creatable
    assert not (tmp_path / "new").exists()
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError):
        check_writable_target(tmp_path / "file")
    with pytest.raises(UserError):
        check_writable_target(tmp_path / "file" / "sub")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # the write probe is gone


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_writability_checks_probe_even_for_root():
    """os.access() grants root everything; /proc refuses new files to everyone."""
    from zubov_bench.io import ensure_writable_dir

    with pytest.raises(UserError, match="not writable"):
        check_writable_target("/proc/zubov-bench-probe/out")
    with pytest.raises(UserError, match="not writable"):
        ensure_writable_dir("/proc")  # exists, so mkdir succeeds; only the probe refuses it


def test_written_files_get_the_usual_permissions_not_mkstemps_0600(tmp_path):
    import os
    import stat

    from zubov_bench.io import write_text

    previous = os.umask(0o022)
    os.umask(previous)
    write_text(tmp_path / "a.md", "x")
    assert stat.S_IMODE((tmp_path / "a.md").stat().st_mode) == 0o666 & ~previous


def test_a_reader_sees_what_another_store_object_wrote_and_updates_do_not_touch_its_records(tmp_path):
    reader, writer = ResultsStore(tmp_path), ResultsStore(tmp_path)
    first = make_record(0.1)
    writer.put(first, outcomes([0, 1], [1, 1], [1, 0]))
    assert [r.id for r in reader.all_records()] == [first.id]
    held = reader.get(first.id)
    second = make_record(0.2)
    writer.put(second, outcomes([0, 1], [1, 1], [0, 0]))
    assert reader.get(second.id).severity == 0.2
    assert [r.id for r in reader.all_records()] == [first.id, second.id]
    reader.update_sanity({first.id: {"check": {"ok": False, "detail": "x"}}})
    assert held.sanity == {}  # a record handed out earlier is not changed behind the caller's back
    assert writer.get(first.id).sanity == {"check": {"ok": False, "detail": "x"}}
    (tmp_path / "records.jsonl").unlink()
    assert reader.all_records() == [] and reader.get(first.id) is None
