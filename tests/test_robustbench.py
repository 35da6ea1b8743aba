"""`table --format robustbench`: RobustBench model-info JSON for every evaluated checkpoint."""
from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.reports import load_records
from zubov_bench.reports.robustbench import FIELDS, eps_text, model_info, model_infos

REPO = Path(__file__).resolve().parents[1]

STORES = ("results/quick", "results/fashion-mnist")
PERCENT = re.compile(r"\d{1,3}\.\d{2}")
# RobustBench's value types (model_info/cifar10/Linf/*.json); accuracies are strings
TYPES = {"link": str, "name": str, "authors": str, "additional_data": bool, "number_forward_passes": int,
         "dataset": str, "venue": str, "architecture": str, "eps": str, "clean_acc": str, "reported": str,
         "autoattack_acc": str, "footnote": str, "threat_model": str, "unreliable": bool}


def run(*args):
    return CliRunner().invoke(main, ["table", *args])


@pytest.mark.parametrize("store", STORES)
def test_every_checkpoint_gets_a_valid_model_info(store, tmp_path):
    records = load_records(REPO / store)
    result = run("--results", str(REPO / store), "--format", "robustbench", "--out", str(tmp_path))
    assert result.exit_code == 0, result.output
    files = sorted(tmp_path.rglob("*.json"))
    checkpoints = {r.checkpoint_sha256 for r in records}
    assert len(files) == len(checkpoints) >= 7
    seen = set()
    for path in files:
        info = json.loads(path.read_text())
        assert set(info) == set(FIELDS) and all(isinstance(info[k], TYPES[k]) for k in FIELDS), path
        assert PERCENT.fullmatch(info["clean_acc"]) and PERCENT.fullmatch(info["autoattack_acc"])
        # `reported` is the checkpoint's own paper-protocol record at that eps, independently looked up
        own = [r for r in records if Path(r.checkpoint).parent.name == path.stem]  # one file per checkpoint
        assert {r.method for r in own} == {info["architecture"]}
        paper = [r for r in own if r.params.get("protocol") == "paper" and r.threat == "linf"
                 and abs(r.severity - 0.1) < 1e-9]
        if paper:
            assert info["reported"] == f"{100 * min(r.robust_acc for r in paper):.2f}", path
            assert "paper protocol" in info["footnote"]
        else:
            assert info["reported"] == "" and "no paper-protocol record" in info["footnote"]
        assert info["threat_model"] == "Linf" and path.parent.name == "Linf"
        assert path.parent.parent.name == info["dataset"] and info["eps"] == "0.1"
        # the number is the stored worst case of that checkpoint at L∞ 0.1, independently looked up
        mine = [r for r in own if r.perturbation == "worst-case" and r.threat == "linf" and abs(r.severity - 0.1) < 1e-9]
        assert len(mine) == 1
        worst = mine[0]
        assert info["autoattack_acc"] == f"{100 * worst.robust_acc:.2f}"
        assert info["clean_acc"] == f"{100 * worst.clean_acc:.2f}"
        assert float(info["autoattack_acc"]) <= float(info["clean_acc"])
        assert info["unreliable"] == (not worst.sanity_ok)
        seen.add(worst.checkpoint_sha256)
    assert seen == checkpoints


def test_stdout_holds_the_same_model_infos_keyed_by_path(tmp_path):
    store = str(REPO / "results/quick")
    printed = json.loads(run("--results", store, "--format", "robustbench").output)
    infos, missing = model_infos(load_records(store))
    assert printed == infos and not missing
    assert all(key.startswith("digits/Linf/") for key in printed)


def test_failed_checks_and_attack_flags_make_it_unreliable():
    records = load_records(REPO / "results/quick")
    by_checkpoint = {}
    for r in records:
        by_checkpoint.setdefault(r.checkpoint_sha256, []).append(r)
    # a checkpoint whose own checks and AutoAttack raised nothing, then one flag added by hand
    mine = next(rs for rs in by_checkpoint.values() if not model_info(rs)["unreliable"])
    clean = model_info(mine)
    flagged = [dataclasses.replace(r, sanity={**r.sanity, "autoattack:dynamic": {
        "ok": False, "detail": "it seems to be a dynamic defense!"}}) if r.perturbation == "worst-case" else r
        for r in mine]
    info = model_info(flagged)
    assert not clean["unreliable"] or "sanity checks failed" in clean["footnote"]
    assert info["unreliable"] and "AutoAttack flagged: autoattack:dynamic" in info["footnote"]


def test_eps_text_matches_robustbench():
    assert eps_text(8 / 255) == "8/255" and eps_text(0.1) == "0.1" and eps_text(0.3) == "0.3"


def test_bad_use_is_a_one_line_error(tmp_path):
    store = str(REPO / "results/quick")
    afile = tmp_path / "f.json"
    afile.write_text("{}")
    for args, message in ((("--format", "robustbench", "--out", str(afile)), "is a file"),
                          (("--eps", "0.1"), "only used with --format robustbench"),
                          (("--out", str(tmp_path)), "is a folder"),
                          (("--format", "robustbench", "--eps", "0.37"), "no checkpoint has a worst-case")):
        result = run("--results", store, *args)
        assert result.exit_code != 0 and message in result.output, (args, result.output)
        assert "Traceback" not in result.output


def test_reported_is_the_paper_protocol_record_where_there_is_one():
    records = load_records(REPO / "results/quick")
    sha = records[0].checkpoint_sha256
    mine = [r for r in records if r.checkpoint_sha256 == sha]
    pgd = next(r for r in mine if r.perturbation == "pgd" and r.threat == "linf" and abs(r.severity - 0.1) < 1e-9)
    paper = dataclasses.replace(pgd, params={**pgd.params, "protocol": "paper"}, robust_acc=0.4321)
    info = model_info(mine + [paper])
    assert info["reported"] == "43.21" and "paper protocol" in info["footnote"]
