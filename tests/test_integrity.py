"""Results you can trust after anything (issue 20): a damaged store, a full disk, a killed parent.

`table`, `plot` and `eval` must answer a damaged store with one line `error: ...` (exit 2), never a
traceback; a full disk is one line naming the path, and `train --force` keeps the old run.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.evaluation.store import ResultsStore

EVAL = ["--n-samples", "30", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def clean_store(node_ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "eval"
    result = cli(["eval", "-c", node_ckpt, "-a", "fgsm", "--eps", "0.2", "--out", str(out), *EVAL])
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture
def store_copy(clean_store, tmp_path):
    return Path(shutil.copytree(clean_store, tmp_path / "eval"))


def cli(args):
    return CliRunner().invoke(main, args)


def assert_one_error_line(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()  # eval may log progress lines before it
    assert lines[-1].startswith("error:") and sum(line.startswith("error:") for line in lines) == 1, result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def readers(store: Path, node_ckpt: str, tmp_path: Path) -> dict[str, list[str]]:
    return {"table": ["table", "--results", str(store)],
            "plot": ["plot", "--results", str(store), "--out", str(tmp_path / "fig")],
            "eval": ["eval", "-c", node_ckpt, "-a", "fgsm", "--eps", "0.2", "--out", str(store), *EVAL]}


@pytest.mark.parametrize("line", ["[1]", "SEVERITY", "{not json"], ids=["list", "severity-abc", "not-json"])
def test_a_malformed_record_line_is_one_error_naming_file_and_line(store_copy, node_ckpt, tmp_path, line):
    records = store_copy / "records.jsonl"
    lines = records.read_text().splitlines()
    if line == "SEVERITY":
        line = json.dumps({**json.loads(lines[0]), "severity": "abc"})
    records.write_text("\n".join(lines + [line]) + "\n")
    for name, args in readers(store_copy, node_ckpt, tmp_path).items():
        assert_one_error_line(cli(args), f"records.jsonl:{len(lines) + 1}: not a valid record")


def test_a_damaged_outcome_is_refused_with_the_repair_and_no_stale_worst_case(store_copy, node_ckpt):
    store = ResultsStore(store_copy)
    fgsm = next(r for r in store.records() if r.perturbation == "fgsm")
    (store_copy / "outcomes" / f"{fgsm.id}.npz").write_bytes(np.random.default_rng(0).bytes(2000))
    add_attack = ["eval", "-c", node_ckpt, "-a", "pgd:steps=3", "--eps", "0.2", "--out", str(store_copy), *EVAL]
    assert_one_error_line(cli(add_attack), fgsm.id, "outcomes", "damaged", "--force")
    # the PGD record was stored but the worst case could not be rebuilt: tables refuse it as stale
    for command in (["table", "--worst-case"], ["plot", "--out", str(store_copy / "fig")]):
        assert_one_error_line(cli([*command, "--results", str(store_copy)]), "worst case", "stale", "eval")
    # the repair the message names: recompute that record; the worst case then covers both attacks
    repair = ["eval", "-c", node_ckpt, "-a", "fgsm", "--eps", "0.2", "--force", "--out", str(store_copy), *EVAL]
    assert cli(repair).exit_code == 0
    assert cli(add_attack).exit_code == 0
    records = ResultsStore(store_copy).records()
    members = {r.id for r in records if r.perturbation in ("fgsm", "pgd") and r.severity == 0.2}
    worst = [r for r in records if r.perturbation == "worst-case" and r.severity == 0.2]
    assert worst and members <= set(worst[0].members)


def test_outcomes_edited_in_place_are_caught_by_their_hash(store_copy):
    """Well-formed arrays with made-up values (every row robust): only the hash can tell."""
    store = ResultsStore(store_copy)
    fgsm = next(r for r in store.records() if r.perturbation == "fgsm")
    forged = {**store.outcomes(fgsm.id)}
    forged["robust"] = np.ones_like(forged["robust"])
    with open(store_copy / "outcomes" / f"{fgsm.id}.npz", "wb") as fh:
        np.savez(fh, **forged)
    with pytest.raises(Exception, match="sha256 differs"):
        store.outcomes(fgsm.id)


def batch(index, robust):
    n = len(index)
    return {"index": np.asarray(index), "clean": np.ones(n, bool), "robust": np.asarray(robust, bool),
            "failed": np.zeros(n, bool), "nfe": np.zeros(n, np.float32), "wall": np.array(0.1)}


def test_a_forged_partial_batch_is_detected_by_its_hash_and_recomputed(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_batch("rec-b64", 0, batch([0, 1, 2], [0, 1, 0]))
    store.save_batch("rec-b64", 1, batch([3, 4], [0, 0]))
    forged = tmp_path / "partial" / "rec-b64" / "batch-000001.npz"
    with open(forged, "wb") as fh:
        np.savez(fh, **batch([3, 4], [1, 1]))  # the right keys, made-up values
    done = store.load_batches("rec-b64")
    assert sorted(done) == [0] and done[0]["robust"].tolist() == [False, True, False]
    assert not forged.exists()  # so the run recomputes it


def test_foreign_entries_in_partial_are_removed_not_a_traceback(tmp_path):
    store = ResultsStore(tmp_path)
    store.save_batch("rec-b64", 0, batch([0, 1], [1, 0]))
    folder = tmp_path / "partial" / "rec-b64"
    (folder / "batch-000001.npz").mkdir()  # a directory where a batch should be
    with open(folder / "batch-000002.npz", "wb") as fh:
        np.savez(fh, other=np.arange(3))  # other keys (no `wall`)
    (folder / "batch-000003.npz").write_bytes(b"junk")
    assert sorted(store.load_batches("rec-b64")) == [0]
    assert sorted(p.name for p in folder.iterdir()) == ["batch-000000.npz", "sha256.json"]


def test_a_resumed_run_clears_partial_folders_of_finished_records(store_copy):
    store = ResultsStore(store_copy)
    done = store.records()[0].id
    store.save_batch(f"{done}-b32", 0, batch([0], [1]))  # left by a run with another batch size
    store.save_batch("0123456789abcdef-b32", 0, batch([0], [1]))  # a record still to finish
    store.tidy()
    assert sorted(p.name for p in (store_copy / "partial").iterdir()) == ["0123456789abcdef-b32"]


def test_records_csv_is_not_rewritten_when_unchanged(store_copy):
    path = store_copy / "records.csv"
    before = os.stat(path)
    ResultsStore(store_copy).tidy()
    after = os.stat(path)
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


# --- a full disk ---------------------------------------------------------------------------------
@contextlib.contextmanager
def full_disk(folder: Path, monkeypatch, room: int = 0, size: str = "8m"):
    """`folder` on a disk with about `room` bytes left: a small tmpfs where this test may mount one
    (root with mount), otherwise a simulated ENOSPC for any atomic write bigger than `room`."""
    folder.mkdir(parents=True, exist_ok=True)
    mounted = os.geteuid() == 0 and shutil.which("mount") and subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], capture_output=True).returncode == 0
    try:
        if mounted:
            yield lambda: _fill(folder, room)
        else:
            import zubov_bench.io as zio

            real_fsync = zio.os.fsync

            def fsync(fd):
                if os.fstat(fd).st_size > room:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                return real_fsync(fd)

            yield lambda: monkeypatch.setattr(zio.os, "fsync", fsync)
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path, room: int) -> None:
    with open(folder / ".filler", "wb", buffering=0) as fh:
        with contextlib.suppress(OSError):
            while True:
                fh.write(b"\0" * 4096)
    os.truncate(folder / ".filler", max(0, os.path.getsize(folder / ".filler") - room))


def test_disk_full_during_eval_is_one_line_naming_the_path(node_ckpt, tmp_path, monkeypatch):
    with full_disk(tmp_path / "disk", monkeypatch) as fill:
        fill()
        out = tmp_path / "disk" / "eval"
        result = cli(["eval", "-c", node_ckpt, "-a", "fgsm", "--eps", "0.2", "--out", str(out), *EVAL])
        assert_one_error_line(result, "No space left on device", str(out))


def train_args(run: Path, *extra):
    return ["train", "--model", "node", "--dataset", "digits", "--epochs", "1", "--no-progress",
            "--device", "cpu", "--out", str(run), *extra]


def test_disk_full_during_train_is_one_line(tmp_path, monkeypatch, cli_env):
    monkeypatch.setenv("ZUBOV_BENCH_DATA", cli_env["ZUBOV_BENCH_DATA"])
    with full_disk(tmp_path / "disk", monkeypatch, room=16_384) as fill:
        fill()
        result = cli(train_args(tmp_path / "disk" / "run"))
        assert_one_error_line(result, "No space left on device", str(tmp_path / "disk" / "run"))


def test_train_force_on_a_nearly_full_disk_keeps_the_old_run(tmp_path, monkeypatch, cli_env):
    monkeypatch.setenv("ZUBOV_BENCH_DATA", cli_env["ZUBOV_BENCH_DATA"])
    with full_disk(tmp_path / "disk", monkeypatch, room=16_384) as fill:
        run = tmp_path / "disk" / "run"
        assert cli(train_args(run)).exit_code == 0
        before = {name: (run / name).read_bytes() for name in ("model.pt", "summary.json", "config.yaml")}
        fill()
        assert_one_error_line(cli(train_args(run, "--force", "--seed", "1")), "No space left on device")
        assert {name: (run / name).read_bytes() for name in before} == before


def test_train_force_replaces_the_run_once_complete(tmp_path, monkeypatch, cli_env):
    monkeypatch.setenv("ZUBOV_BENCH_DATA", cli_env["ZUBOV_BENCH_DATA"])
    run = tmp_path / "run"
    assert cli(train_args(run)).exit_code == 0
    assert cli(train_args(run, "--force", "--seed", "1")).exit_code == 0
    assert json.loads((run / "summary.json").read_text())["seed"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # no staging folder left


# --- workers die with their parent ---------------------------------------------------------------
PARENT = textwrap.dedent("""
    import os, sys, time
    from zubov_bench.workers import spawn_pool

    def sleep_forever(path):
        with open(path, "w") as fh:
            fh.write(str(os.getpid()))
        time.sleep(600)

    if __name__ == "__main__":
        pool = spawn_pool(2)
        for i in range(2):
            pool.submit(sleep_forever, os.path.join(sys.argv[1], f"worker-{i}"))
        time.sleep(600)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):  # a zombie is dead; only its parent (now init) has not reaped it
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"
    return True


def test_workers_die_when_the_parent_is_killed(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("worker-*"))) < 2 or any(not p.read_text() for p in tmp_path.glob("worker-*")):
            assert time.monotonic() < deadline, "workers did not start"
            time.sleep(0.2)
        workers = [int(p.read_text()) for p in tmp_path.glob("worker-*")]
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid in workers if _alive(pid)]
        for pid in survivors:
            os.kill(pid, signal.SIGKILL)
        assert not survivors
    finally:
        if parent.poll() is None:
            parent.kill()
