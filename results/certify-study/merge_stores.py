"""Copy every record (with its per-example outcomes) of results stores into another:
python results/certify-study/merge_stores.py DEST SRC [SRC ...]. Used when steps of run.sh ran as
parallel processes into their own stores (README.md says which)."""
from __future__ import annotations

import sys

from zubov_bench.evaluation import ResultsStore


def main(dest: str, *sources: str) -> None:
    target = ResultsStore(dest)
    for source in sources:
        store = ResultsStore(source)
        for record in store.all_records():
            target.put(record, store.outcomes(record.id), replace=True)
            print(f"{source}: {record.method} {record.perturbation} radius {record.severity:g} -> {dest}")


if __name__ == "__main__":
    main(*sys.argv[1:])
