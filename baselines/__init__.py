"""Baseline models. Each module registers one model when imported; zubov-bench imports it through
its entry point in pyproject.toml (group `zubov_bench.models`), never by this package's name
(see docs/add_your_model.md)."""
