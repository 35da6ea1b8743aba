"""The six sanity checks of the evaluation protocol (docs/evaluation.md), computed from stored records.

Each check adds {"ok": bool, "detail": str} under its name to the `sanity` field of the records
it concerns; the worst-case record of an ε collects every check of its members.

1. eps_monotone / large_eps: robust accuracy does not rise with ε, and PGD at ε = 1.0 (L∞)
   reaches about 0.
2. iterative_vs_single: iterative attacks do at least as well as single-step ones.
3. whitebox_vs_blackbox: white-box gradient attacks do at least as well as Square and transfer.
4. robust_le_clean: robust accuracy is at most clean accuracy (not for smoothing certificates, which
   are about the smoothed classifier); certified_le_empirical: a deterministic certificate at radius
   rho claims no more than the empirical L2 worst case at eps = rho on the same examples.
5. grad_nonzero: the input gradient at clean points is non-zero for nearly all samples; for an
   attack with a margin loss, samples with a saturated softmax count as reached. A worst case
   passes when one of its members does (the per-example minimum reaches what that member reaches).
6. solver_gap: the deployed-solver and the RK4-unroll numbers differ by less than 2 points
   (plus unroll_agreement: the unroll agrees with the deployed model on >= 99% of clean points).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, fields

from ..records import Record, is_attack_flag
from .solver_view import MIN_AGREEMENT, UnrollChoice
from .worst_case import WORST_CASE

LARGE_EPS_MAX = 0.05  # "about 0" at eps = 1.0 L∞
SOLVER_GAP_MAX = 0.02  # two points
GRAD_NONZERO_MIN = 0.99  # "nearly all samples"
GRAD_ZERO = 1e-10  # below this an L2 step normalised by the gradient norm no longer moves
# Checks that need the model, not only the records: the gradient statistics, the unroll choice
# (solver_gap passes a deployed solver that is already the unroll)
MODEL_CHECKS = ("grad_nonzero", "unroll_agreement", "solver_gap")
# Checks a worst case passes when any member passes them, not only when all do
PASSED_BY_ANY_MEMBER = ("grad_nonzero",)
# Kinds that check 3 expects a white-box gradient attack to match or beat
BLACK_BOX_CONTROLS = ("black-box", "transfer")
IGNORED_PARAMS = ("step_size", "batch_size")  # may change with ε or with the harness


def tolerance(n: int) -> float:
    """'More than noise': one point, or two samples on a small subset."""
    return max(0.01, 2.0 / max(n, 1))


@dataclass
class GradStats:
    nonzero: float  # fraction of samples with a cross-entropy gradient norm above GRAD_ZERO
    n: int
    median: float
    saturated: float = 0.0  # fraction whose cross-entropy gradient is zero but whose margin gradient is not


def perturbation_traits(name: str) -> dict:
    from ..perturbations import PERTURBATIONS

    if name not in PERTURBATIONS:
        return {"kind": "unknown", "gradient_based": False, "iterative": False, "ensemble": False}
    cls = PERTURBATIONS.get(name)
    return {"kind": cls.kind, "gradient_based": cls.gradient_based, "iterative": cls.iterative,
            "ensemble": cls.ensemble}


def uses_margin_loss(r: Record) -> bool:
    """Whether the record's attack, with the record's settings, follows a margin loss (its class says)."""
    from ..perturbations import PERTURBATIONS

    cls = PERTURBATIONS.get(r.perturbation)
    names = {f.name for f in fields(cls.Params)}
    return cls(**{k: v for k, v in r.params.items() if k in names}).uses_margin_loss()


def label(r: Record) -> str:
    solver = "" if r.grad_solver in ("none", "all") else f" [{r.grad_solver}]"
    return f"{r.perturbation} {r.threat} {r.severity:g}{solver}"


class SanityReport:
    def __init__(self, records: list[Record]):
        self.records = records
        self.result: dict[str, dict] = {r.id: {} for r in records}

    def put(self, r: Record, check: str, ok: bool, detail: str) -> None:
        old = self.result[r.id].get(check)
        if old is None or (old["ok"] and not ok):  # keep the first failure
            self.result[r.id][check] = {"ok": bool(ok), "detail": detail}


def run_checks(records: list[Record], grad_stats: dict[str, GradStats] | None = None,
               unrolls: dict[int, UnrollChoice] | None = None, solver_text: str = "") -> dict[str, dict]:
    """Sanity results keyed by record id, for the complete records of one checkpoint and seed."""
    # ids hash every param, a transfer source's path included, so id order differs between clones:
    # ties (which member a detail names) are broken in an order that does not
    records = sorted(records, key=_clone_independent_order)
    report = SanityReport(records)
    by_subset: dict[int, list[Record]] = {}
    for r in records:
        by_subset.setdefault(r.params.get("n_samples", r.n), []).append(r)
    for group in by_subset.values():
        _robust_le_clean(report, group)
        _certified_le_empirical(report, group)
        _eps_monotone(report, group)
        _large_eps(report, group)
        _iterative_vs_single(report, group)
        _whitebox_vs_blackbox(report, group)
        _solver_gap(report, group, unrolls or {})
        _grad_nonzero(report, group, grad_stats or {})
        _unroll_agreement(report, group, unrolls or {}, solver_text)
        _keep_attack_flags(report, group)
        _collect_into_worst_case(report, group)
    return report.result


def _clone_independent_order(r: Record) -> tuple:
    return (r.perturbation, r.threat, round(r.severity, 8), r.grad_solver,
            json.dumps(r.attack_settings, sort_keys=True, default=str), r.shard)


def _attacks(group):
    return [r for r in group if r.threat != "noise" and r.perturbation != WORST_CASE]


def _robust_le_clean(report, group):
    from .certify import certifies_deployed_model, is_certified

    for r in group:
        if is_certified(r.threat) and not certifies_deployed_model(r):
            continue  # smoothing certifies the smoothed classifier, which may beat the model's clean accuracy
        ok = not (r.robust_acc > r.clean_acc)
        report.put(r, "robust_le_clean", ok, f"{label(r)}: robust {r.robust_acc:.1%} vs clean {r.clean_acc:.1%}")


def _certified_le_empirical(report, group):
    """A deterministic certificate of the model at radius rho may not claim more than the empirical
    worst case at L2 eps = rho on the same examples (checked on the certificate's record)."""
    from .certify import certified_above_empirical, certifies_deployed_model

    above = {c.id: w for c, w in certified_above_empirical(group)}
    for r in group:
        if certifies_deployed_model(r) and r.severity > 0:
            worst = above.get(r.id)
            detail = (f"{label(r)}: certified {r.robust_acc:.1%}" + (f" > empirical worst case {worst.robust_acc:.1%}"
                                                                     if worst else " <= every empirical worst case"))
            report.put(r, "certified_le_empirical", worst is None, detail)


def _series_key(r: Record) -> tuple:
    params = {k: v for k, v in r.params.items() if k not in IGNORED_PARAMS + ("sanity",)}
    return (r.perturbation, r.threat, r.grad_solver, repr(sorted(params.items(), key=str)))


def _eps_monotone(report, group):
    series: dict[tuple, list[Record]] = {}
    for r in group:
        if r.threat != "noise":
            series.setdefault(_series_key(r), []).append(r)
    for members in series.values():
        members.sort(key=lambda r: r.severity)
        for lo, hi in zip(members, members[1:]):
            ok = hi.robust_acc <= lo.robust_acc + tolerance(hi.n)
            report.put(hi, "eps_monotone", ok, f"{hi.perturbation} {hi.threat}: robust {hi.robust_acc:.1%} at "
                       f"eps {hi.severity:g} vs {lo.robust_acc:.1%} at eps {lo.severity:g}")


def _large_eps(report, group):
    for r in group:
        if r.params.get("sanity") == "large-eps":
            ok = r.robust_acc <= LARGE_EPS_MAX
            report.put(r, "large_eps", ok, f"PGD at eps {r.severity:g} {r.threat} [{r.grad_solver}] leaves "
                       f"{r.robust_acc:.1%} robust (expected about 0)")


def _by_cell(records, with_solver: bool) -> dict[tuple, list[Record]]:
    cells: dict[tuple, list[Record]] = {}
    for r in records:
        # the paper protocol may scale ε (normalised units): it is no peer of the strict attacks at this ε
        if not r.params.get("sanity") and r.params.get("protocol") != "paper":
            key = (r.threat, round(r.severity, 8)) + ((r.grad_solver,) if with_solver else ())
            cells.setdefault(key, []).append(r)
    return cells


def _iterative_vs_single(report, group):
    for cell in _by_cell(_attacks(group), with_solver=True).values():
        traits = {r.id: perturbation_traits(r.perturbation) for r in cell}
        singles = [r for r in cell if traits[r.id]["gradient_based"] and not traits[r.id]["iterative"]]
        if not singles:
            continue
        single = min(singles, key=lambda r: r.robust_acc)
        for r in cell:
            if traits[r.id]["gradient_based"] and traits[r.id]["iterative"]:
                ok = r.robust_acc <= single.robust_acc + tolerance(r.n)
                report.put(r, "iterative_vs_single", ok, f"{label(r)}: {r.robust_acc:.1%} robust vs "
                           f"single-step {single.perturbation} {single.robust_acc:.1%}")


def _whitebox_vs_blackbox(report, group):
    for cell in _by_cell(_attacks(group), with_solver=False).values():
        traits = {r.id: perturbation_traits(r.perturbation) for r in cell}
        kinds = {i: t["kind"] for i, t in traits.items()}
        # an ensemble (AutoAttack standard holds Square) is not a pure gradient attack
        white = [r for r in cell if kinds[r.id] == "white-box" and not traits[r.id]["ensemble"]]
        black = [r for r in cell if kinds[r.id] in BLACK_BOX_CONTROLS]
        if not white:
            continue
        best = min(white, key=lambda r: r.robust_acc)
        for r in black:
            ok = best.robust_acc <= r.robust_acc + tolerance(r.n)
            detail = (f"{r.threat} eps {r.severity:g}: best white-box {label(best)} leaves {best.robust_acc:.1%}, "
                      f"{kinds[r.id]} {r.perturbation} {r.robust_acc:.1%}")
            report.put(r, "whitebox_vs_blackbox", ok, detail)
            report.put(best, "whitebox_vs_blackbox", ok, detail)


def _solver_gap(report, group, unrolls):
    variants: dict[tuple, list[Record]] = {}
    for r in _attacks(group):
        if perturbation_traits(r.perturbation)["gradient_based"]:
            key = (r.perturbation, r.threat, round(r.severity, 8), repr(sorted(r.params.items(), key=str)))
            variants.setdefault(key, []).append(r)
    same = next((u for u in unrolls.values() if u.same_as_deployed), None)
    for members in variants.values():
        deployed = [r for r in members if r.grad_solver == "deployed"]
        unrolled = [r for r in members if r.grad_solver.startswith(("rk4:", "bpda:"))]
        for d in deployed:
            if not unrolled and same is not None:
                report.put(d, "solver_gap", True, f"the deployed solver is already rk4:{same.steps} "
                           "(no adjoint): the unroll is the deployed solver")
            for u in unrolled:
                gap = abs(d.robust_acc - u.robust_acc)
                detail = (f"{d.perturbation} {d.threat} eps {d.severity:g}: deployed {d.robust_acc:.1%} vs "
                          f"{u.grad_solver} {u.robust_acc:.1%} (gap {gap * 100:.1f} points)")
                report.put(d, "solver_gap", gap < SOLVER_GAP_MAX, detail)
                report.put(u, "solver_gap", gap < SOLVER_GAP_MAX, detail)


def _grad_nonzero(report, group, grad_stats):
    for r in _attacks(group):
        stats = grad_stats.get(r.grad_solver)
        if stats is None or not perturbation_traits(r.perturbation)["gradient_based"]:
            continue
        margin = uses_margin_loss(r)
        reached = stats.nonzero + (stats.saturated if margin else 0.0)
        ok = reached >= GRAD_NONZERO_MIN
        detail = (f"[{r.grad_solver}] input gradient non-zero on {stats.nonzero:.1%} of {stats.n} clean samples "
                  f"(median norm {stats.median:.2e})")
        if margin and stats.saturated:
            detail += (f"; the attack's margin loss also starts from the {stats.saturated:.1%} with a saturated "
                       f"softmax (zero cross-entropy gradient): {reached:.1%} reached")
        elif not ok and stats.saturated:
            # not broken gradients but a saturated softmax: still a weakness of every cross-entropy attack
            detail += (f"; {stats.saturated:.1%} have a saturated softmax (zero cross-entropy gradient, non-zero "
                       "logit-margin gradient): cross-entropy attacks cannot start there, margin losses "
                       "(AutoAttack's DLR) can")
        report.put(r, "grad_nonzero", ok, detail)


def _unroll_agreement(report, group, unrolls, solver_text):
    for r in _attacks(group):
        mode, _, steps = r.grad_solver.partition(":")
        choice = unrolls.get(int(steps)) if mode in ("rk4", "bpda") and steps.isdigit() else None
        if choice is not None:
            ok = choice.agreement >= MIN_AGREEMENT
            report.put(r, "unroll_agreement", ok, f"rk4:{choice.steps} agrees with the deployed "
                       f"{solver_text} on {choice.agreement:.1%} of clean predictions")


def _keep_attack_flags(report, group):
    """Flags an attack's library raised while the record was computed (AutoAttack's own checks) are
    stored with the record and cannot be recomputed from it: carry them over."""
    for r in group:
        for check, value in r.sanity.items() if r.perturbation != WORST_CASE else ():  # rebuilt from members
            if is_attack_flag(check):
                report.put(r, check, value.get("ok", False), value.get("detail", ""))


def _collect_into_worst_case(report, group):
    by_id = {r.id: r for r in group}
    for wc in (r for r in group if r.perturbation == WORST_CASE):
        any_member: dict[str, list[tuple[Record, dict]]] = {}
        for member in sorted((by_id[m] for m in wc.members if m in by_id), key=_clone_independent_order):
            for check, value in report.result.get(member.id, {}).items():
                if check in PASSED_BY_ANY_MEMBER:
                    any_member.setdefault(check, []).append((member, value))
                else:
                    report.put(wc, check, value["ok"], value["detail"])
        for check, results in any_member.items():
            member, value = next(((m, v) for m, v in results if v["ok"]), results[0])
            loss = " (margin loss)" if uses_margin_loss(member) else ""
            report.put(wc, check, value["ok"], f"{member.perturbation}{loss}: {value['detail']}")


def failures(records: list[Record]) -> list[tuple[str, str]]:
    """Unique (check, detail) pairs of every failed check in `records`."""
    seen = {}
    for r in records:
        for check, value in sorted(r.sanity.items()):
            if not value.get("ok", True):
                seen.setdefault((check, value.get("detail", "")), None)
    return list(seen)
