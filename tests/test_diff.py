"""`zubov-bench diff OLD NEW`: a regenerated store is compared measurement by measurement (issue 18)."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from click.testing import CliRunner

from zubov_bench.cli import main

QUICK = Path(__file__).resolve().parents[1] / "results" / "quick"


def _copy(tmp_path: Path, name: str) -> Path:
    out = tmp_path / name
    (out / "checkpoints").mkdir(parents=True)
    shutil.copy(QUICK / "records.jsonl", out / "records.jsonl")
    shutil.copy(QUICK / "checkpoints" / "manifest.json", out / "checkpoints" / "manifest.json")
    return out


def _edit(store: Path, perturbation: str, method: str, change) -> None:
    """Apply `change` to the first plain record of this method and perturbation (or drop it: None)."""
    lines, done = [], False
    for line in (store / "records.jsonl").read_text().splitlines():
        record = json.loads(line)
        if not done and record["perturbation"] == perturbation and record["method"] == method:
            done, record = True, change(record)
            if record is None:
                continue
        lines.append(json.dumps(record))
    assert done
    (store / "records.jsonl").write_text("\n".join(lines) + "\n")


def _diff(*args):
    return CliRunner().invoke(main, ["diff", *map(str, args)])


def test_identical_stores_pass_and_a_moved_number_fails(tmp_path):
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    same = _diff(old, new, "--tolerance", "0")
    assert same.exit_code == 0 and "largest difference 0.00 points" in same.output, same.output
    _edit(new, "fgsm", "node", lambda r: {**r, "robust_acc": r["robust_acc"] - 0.03})
    moved = _diff(old, new)
    assert moved.exit_code == 1 and "1 beyond 2 points" in moved.output and "node s0 digits: fgsm" in moved.output
    assert _diff(old, new, "--tolerance", "5").exit_code == 0


def test_a_measurement_in_one_store_only_fails_unless_allowed(tmp_path):
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "gaussian", "tisode", lambda r: None)
    missing = _diff(old, new)
    assert missing.exit_code == 1 and f"1 only in {old}" in missing.output
    assert _diff(old, new, "--allow-missing").exit_code == 0


def test_a_checkpoint_that_trained_differently_fails(tmp_path):
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    manifest = json.loads((new / "checkpoints" / "manifest.json").read_text())
    entry = next(e for e in manifest["checkpoints"] if e["method"] == "stable")
    entry["test_acc"] -= 0.04  # the cross-machine swing issue 18 measured for `stable`
    (new / "checkpoints" / "manifest.json").write_text(json.dumps(manifest))
    result = _diff(old, new)
    assert result.exit_code == 1 and "stable s0 digits: training test_acc" in result.output


def test_bad_input_is_one_line(tmp_path):
    result = _diff(QUICK, tmp_path / "none")
    assert result.exit_code != 0 and result.output.strip().splitlines() == [f"error: results folder not found: {tmp_path / 'none'}"]
    bad = _diff(QUICK, QUICK, "--tolerance", "-1")
    assert bad.exit_code == 2 and "must be a number of accuracy points" in bad.output


def test_only_compares_the_named_perturbations(tmp_path):
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "fog", "sodef", lambda r: {**r, "robust_acc": r["robust_acc"] - 0.2})
    assert _diff(old, new).exit_code == 1
    headline = _diff(old, new, "--only", "worst-case")
    assert headline.exit_code == 0 and "fog" not in headline.output, headline.output
    _edit(new, "worst-case", "sodef", lambda r: {**r, "robust_acc": r["robust_acc"] - 0.05})
    assert _diff(old, new, "--only", "worst-case").exit_code == 1
    assert _diff(old, new, "--only", "fgsm", "--only", "worst-case").exit_code == 1  # repeatable, as in `table`
    typo = _diff(old, new, "--only", "worstcase")  # would compare only the training accuracies
    assert typo.exit_code != 0 and typo.output.strip().splitlines() == \
        [f"error: --only: no record of worstcase in {old} or {new}"], typo.output


def test_a_certificates_facts_of_its_checkpoint_do_not_make_it_another_measurement(tmp_path):
    """The Lyapunov certificate stores its stem bound and level beside its settings; a retrained
    checkpoint has other facts, and the records still pair up."""
    old, new = _copy(tmp_path, "old"), _copy(tmp_path, "new")
    _edit(new, "lyapunov certificate", "zubov",
          lambda r: {**{k: v for k, v in r.items() if k != "id"},  # the id hashes the params: recomputed
                     "params": {**r["params"], "stem_lipschitz": r["params"]["stem_lipschitz"] * 1.1}})
    result = _diff(old, new, "--tolerance", "0")
    assert result.exit_code == 0 and "only in" not in result.output, result.output
