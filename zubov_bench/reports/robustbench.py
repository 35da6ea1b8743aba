"""`table --format robustbench`: one RobustBench model-info JSON per evaluated checkpoint.

The fields and their formats follow RobustBench's `model_info/<dataset>/<threat>/<model>.json`
(e.g. `model_info/cifar10/Linf/Standard.json`): accuracies as strings in % with two decimals,
`eps` as a string ("0.1", "8/255"), `additional_data` and `unreliable` as booleans. We add
`threat_model`, which RobustBench encodes in the folder name, so a single file says it too.

`autoattack_acc` is the strict number: the per-example worst case over every attack the suite ran
at the dataset's standard L∞ ε (AutoAttack standard among them when it was run), not AutoAttack
alone. `reported` is the model's paper-protocol number (`eval --attack paper` records) where the
store has one, else "" and the footnote says so.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path

from ..errors import UserError
from ..evaluation.paper_protocol import paper_protocol_accuracy
from ..evaluation.worst_case import WORST_CASE
from ..io import write_text
from ..records import Record, is_attack_flag

THREAT_MODEL = {"linf": "Linf", "l2": "L2"}
# The L∞ ε a leaderboard reports per dataset: RobustBench's 8/255 for colour images, Madry et al.'s
# 0.3 for MNIST; 0.1 for FashionMNIST and the 8x8 digits, where 0.3 leaves every model at 0.
STANDARD_LINF_EPS = {"mnist": 0.3, "fashion-mnist": 0.1, "digits": 0.1, "cifar10": 8 / 255, "svhn": 8 / 255}
FIELDS = ("link", "name", "authors", "additional_data", "number_forward_passes", "dataset", "venue",
          "architecture", "eps", "clean_acc", "reported", "autoattack_acc", "footnote", "threat_model",
          "unreliable")
NO_PAPER_PROTOCOL = ("reported is empty: no paper-protocol record for this checkpoint (`eval --attack paper` writes one "
                     "for the models that declare a paper protocol)")


def percent(value: float) -> str:
    """An accuracy in [0, 1] as RobustBench writes it: "53.42"."""
    return f"{100 * value:.2f}"


def eps_text(eps: float) -> str:
    """"8/255" where ε is a small multiple of 1/255 (colour grids), else "0.1"."""
    fraction = Fraction(eps).limit_denominator(255)
    if fraction.denominator == 255 and abs(float(fraction) - eps) < 1e-9:
        return f"{fraction.numerator}/255"
    return f"{eps:g}"


def standard_eps(dataset: str, eps: float | None = None) -> float:
    if eps is not None:
        return eps
    if dataset not in STANDARD_LINF_EPS:
        raise UserError(f"no standard L-inf eps known for dataset {dataset!r}; pass --eps")
    return STANDARD_LINF_EPS[dataset]


def _strict_worst_case(records: list[Record], eps: float) -> Record | None:
    """The worst-case record at (L∞, ε) on the largest evaluated subset; over several evaluation
    seeds, the lowest one (strict)."""
    cell = [r for r in records if r.perturbation == WORST_CASE and r.threat == "linf"
            and abs(r.severity - eps) < 1e-8]
    if not cell:
        return None
    largest = max(r.n for r in cell)
    return min((r for r in cell if r.n == largest), key=lambda r: (r.robust_acc, r.seed))


def model_info(records: list[Record], eps: float | None = None) -> dict | None:
    """The model-info dict of one checkpoint's records; None if it has no worst case at that ε."""
    first = records[0]
    eps = standard_eps(first.dataset, eps)
    worst = _strict_worst_case(records, eps)
    if worst is None:
        return None
    member_ids = set(worst.members)
    members = sorted({r.perturbation for r in records if r.id in member_ids})
    failed = sorted({name for name, v in worst.sanity.items() if not v.get("ok", True)})
    checks = [n for n in failed if not is_attack_flag(n)]
    flags = [n for n in failed if is_attack_flag(n)]
    notes = [f"autoattack_acc is the per-example worst case over {', '.join(members) or 'its member attacks'} "
             f"at L-inf eps {eps_text(eps)} on n = {worst.n} test examples (zubov-bench, evaluation seed "
             f"{worst.seed}), not AutoAttack alone" + ("" if "autoattack" in members else
                                                       "; AutoAttack was not run at this eps")]
    if checks:
        notes.append(f"sanity checks failed: {', '.join(checks)}")
    if flags:
        notes.append(f"AutoAttack flagged: {', '.join(flags)}")
    paper = paper_protocol_accuracy(records, first.checkpoint_sha256, eps)
    notes.append(NO_PAPER_PROTOCOL if paper is None else
                 "reported is the model's own paper protocol (records with params.protocol = paper) at that eps")
    return {
        "link": "",
        "name": f"{first.method} ({first.model}, train seed {first.train_seed})",
        "authors": "",
        "additional_data": False,  # every suite model trains on its dataset's training split only
        "number_forward_passes": 1,  # deterministic: one forward pass per prediction
        "dataset": first.dataset,
        "venue": "N/A",
        "architecture": first.model,
        "eps": eps_text(eps),
        "clean_acc": percent(worst.clean_acc),
        "reported": "" if paper is None else percent(paper),
        "autoattack_acc": percent(worst.robust_acc),
        "footnote": "; ".join(notes) + ".",
        "threat_model": THREAT_MODEL["linf"],
        "unreliable": bool(failed),
    }


def model_infos(records: list[Record], dataset: str | None = None,
                eps: float | None = None) -> tuple[dict[str, dict], list[str]]:
    """(relative path <dataset>/Linf/<model id>.json -> model info, one per checkpoint; the
    checkpoints left out because they have no worst case at that ε)."""
    by_checkpoint: dict[str, list[Record]] = {}
    for r in records:
        if dataset is None or r.dataset == dataset:
            by_checkpoint.setdefault(r.checkpoint_sha256, []).append(r)
    if not by_checkpoint:
        raise UserError("no records match" + (f" dataset {dataset!r}" if dataset else ""))
    out, missing = {}, []
    for sha, mine in by_checkpoint.items():
        info = model_info(mine, eps)
        first = mine[0]
        if info is None:
            missing.append(f"{first.checkpoint} (no L-inf worst case at eps "
                           f"{eps_text(standard_eps(first.dataset, eps))})")
            continue
        stem = f"{first.method}-{first.dataset}-s{first.train_seed}"
        path = f"{first.dataset}/{info['threat_model']}/{stem}.json"
        if path in out:  # two checkpoints of one method and seed: tell them apart by their hash
            path = f"{first.dataset}/{info['threat_model']}/{stem}-{sha[:12]}.json"
        out[path] = info
    if not out:
        raise UserError("no checkpoint has a worst-case record to export: " + "; ".join(missing))
    return out, missing


def render_robustbench(infos: dict[str, dict]) -> str:
    """All model infos as one JSON object keyed by the relative path each would be written to."""
    return json.dumps(infos, indent=2) + "\n"


def write_robustbench(infos: dict[str, dict], out_dir: str | Path) -> list[Path]:
    """One file per model info under `out_dir`, laid out like RobustBench's model_info folder."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"--out {out_dir} is a file; --format robustbench writes a folder of JSON files")
    written = []
    for relative, info in infos.items():
        path = out_dir / relative
        write_text(path, json.dumps(info, indent=2) + "\n")
        written.append(path)
    return written
