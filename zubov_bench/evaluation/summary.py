"""The short summary table `zubov-bench eval` prints at the end."""
from __future__ import annotations

from ..records import Record
from .sanity import failures
from .worst_case import WORST_CASE

HIDDEN_PARAMS = ("n_samples", "batch_size", "sanity", "step_size")


def format_summary(records: list[Record]) -> str:
    blocks = []
    for sha in dict.fromkeys(r.checkpoint_sha256 for r in records):
        mine = [r for r in records if r.checkpoint_sha256 == sha and not r.shard]
        if mine:
            blocks.append(_checkpoint_block(mine))
    partial = [r for r in records if r.shard]
    if partial:
        blocks.append(f"{len(partial)} shard record(s) stored; the merged records appear once every shard is done.")
    issues = failures(records)
    if issues:
        blocks.append("sanity warnings:\n" + "\n".join(f"  ! {check}: {detail}" for check, detail in issues))
    return "\n\n".join(blocks)


def _checkpoint_block(records: list[Record]) -> str:
    first = next((r for r in records if not r.params.get("sanity")), records[0])
    lines = [f"{first.method} on {first.dataset}  {first.checkpoint}  (sha256 {first.checkpoint_sha256[:12]})  "
             f"n={first.n}  clean {first.clean_acc:.1%}  seed {first.seed}"]
    for title, rows in _blocks(records):
        lines += _table(title, rows)
    lines += ["", "robust accuracy in %; '!' marks a failed sanity check; worst-case = per-example minimum "
                 "over every attack and gradient solver at that eps"]
    return "\n".join(lines)


def _blocks(records):
    order = {"linf": 0, "l2": 1, "noise": 2}
    threats = sorted({r.threat for r in records}, key=lambda t: order.get(t, 3))
    for threat in threats:
        rows = [r for r in records if r.threat == threat]
        if threat != "noise":
            yield f"{threat} eps", rows
            continue
        for name in dict.fromkeys(r.perturbation for r in rows):
            yield f"{name}", [r for r in rows if r.perturbation == name]


def _row_label(r: Record, varying: set[str]) -> str:
    label = r.perturbation + (" (sanity)" if r.params.get("sanity") else "")
    extra = [f"{k}={r.params.get(k)}" for k in sorted(varying)]
    if r.grad_solver not in ("none", "all"):
        extra.append(r.grad_solver)
    return label + (f" [{', '.join(extra)}]" if extra else "")


def _varying_params(rows: list[Record]) -> dict[str, set[str]]:
    out = {}
    for name in {r.perturbation for r in rows}:
        same = [r for r in rows if r.perturbation == name]
        keys = {k for r in same for k in r.params if k not in HIDDEN_PARAMS}
        out[name] = {k for k in keys if len({repr(r.params.get(k)) for r in same}) > 1}
    return out


def _table(title: str, rows: list[Record]) -> list[str]:
    severities = sorted({round(r.severity, 8) for r in rows})
    varying = _varying_params(rows)
    cells: dict[str, dict[float, str]] = {}
    for r in sorted(rows, key=lambda r: (r.perturbation == WORST_CASE, bool(r.params.get("sanity")))):
        mark = " " if r.sanity_ok else "!"
        cells.setdefault(_row_label(r, varying[r.perturbation]), {})[round(r.severity, 8)] = \
            f"{r.robust_acc * 100:.1f}{mark}"
    width = max([len(title)] + [len(label) for label in cells]) + 2
    lines = ["", f"  {title:<{width}}" + "".join(f"{s:>9g}" for s in severities)]
    for label, row in cells.items():
        lines.append(f"  {label:<{width}}" + "".join(f"{row.get(s, '-'):>9}" for s in severities))
    return lines
