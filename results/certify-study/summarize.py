"""Summary table of results/certify-study/store (run by run.sh's `summary` step): per model and
certificate, the certified accuracy at each radius and the median certified radius."""
from __future__ import annotations

import sys

import numpy as np

from zubov_bench.evaluation import ResultsStore
from zubov_bench.evaluation.certify import is_certified, median_certified_radius


def main(root: str) -> None:
    store = ResultsStore(root)
    rows: dict[tuple, dict] = {}
    for r in store.all_records():
        if not is_certified(r.threat) or r.shard:
            continue
        row = rows.setdefault((r.method, r.perturbation), {"n": r.n, "clean": r.clean_acc, "acc": {}, "id": r.id,
                                                           "wall": r.wall_time, "params": r.params})
        row["acc"][r.severity] = r.robust_acc
    radii = sorted({rad for row in rows.values() for rad in row["acc"]})
    print("| model | certificate | n | clean (deployed) | "
          + " | ".join(f"certified at L2 {rad:g}" for rad in radii)
          + " | median certified radius | median over the certified | wall (s) |")
    print("|" + "---|" * (7 + len(radii)))
    for (method, label), row in sorted(rows.items()):
        outcome = store.outcomes(row["id"])
        median = median_certified_radius(outcome)
        certified = outcome["radius"][outcome["correct"]]
        among = f"{np.median(certified):.4g}" if len(certified) else "-"
        cells = " | ".join(f"{row['acc'][rad]:.1%}" if rad in row["acc"] else "" for rad in radii)
        print(f"| {method} | {label} | {row['n']} | {row['clean']:.1%} | {cells} | {median:.4g} | {among} | "
              f"{row['wall']:.0f} |")
    print("\nCertified accuracy at radius 0: the share of examples with a certificate that are correct "
          "(smoothing: the smoothed classifier's accuracy, abstentions wrong). Median certified radius: "
          "over all examples, wrong or abstained counted as 0.")
    for (method, label), row in sorted(rows.items()):
        if row["params"].get("method") == "lyapunov":
            facts = {k: row["params"][k] for k in ("stem_lipschitz", "level", "quad", "disjointness",
                                                   "flow_invariance") if k in row["params"]}
            print(f"\n{method} {label}: {facts}")
            o = store.outcomes(row["id"])
            has = o["feature_radius_sound"] > 0
            if has.any():
                print(f"  z(0) inside its PRoA: {has.mean():.1%}; of those, median feature radius of (b): global "
                      f"{np.median(o['feature_radius_global'][has]):.4g}, local "
                      f"{np.median(o['feature_radius_local'][has]):.4g}, after the flow check "
                      f"{np.median(o['feature_radius'][has]):.4g}; flow check passed without halving: "
                      f"{o['flow_ok'][has].mean():.1%}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/certify-study/store")
