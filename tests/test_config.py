"""One config model (issue 17, item 2): one type-driven coercion, and every committed run's stored
config still resolves to what it resolved to before the coercion was unified."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from zubov_bench.checkpoint import read_payload
from zubov_bench.config import build_dataclass, coerce
from zubov_bench.errors import UserError
from zubov_bench.models import MODELS
from zubov_bench.models.base import make_config
from zubov_bench.training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[1]
# Captured with the two old coerce functions (models/base.py at 94ffb3b) by resolving each
# committed checkpoint's and run folder's stored config: {path: {model, model_config, train}}.
BEFORE = json.loads((REPO / "tests" / "data" / "committed_configs.json").read_text())


def _plain(value):
    return json.loads(json.dumps(value, default=list))


def resolve_stored(path: str, model: str) -> tuple[dict, dict | None]:
    """(model config, training config) that today's code resolves from the config stored at `path`
    (a checkpoint holds no training config: None)."""
    if path.endswith(".pt"):
        model_cfg, train = read_payload(REPO / path)["config"], None
    else:
        stored = yaml.safe_load((REPO / path).read_text())
        model_cfg, train = stored["model_config"], stored["train"]
    resolved = _plain(dataclasses.asdict(make_config(MODELS.get(model).Config, model_cfg)))
    return resolved, None if train is None else _plain(dataclasses.asdict(build_dataclass(TrainConfig, train, "training")))


@pytest.mark.parametrize("path", sorted(BEFORE))
def test_every_committed_run_resolves_as_before(path):
    before = BEFORE[path]
    resolved, train = resolve_stored(path, before["model"])
    # keys added to a Config since keep their defaults; the ones that existed must not move
    assert {k: resolved[k] for k in before["model_config"]} == before["model_config"]
    if train is not None:
        defaults = _train_defaults()
        assert train | {k: v for k, v in defaults.items() if k not in before["train"]} == defaults | before["train"]


def _train_defaults() -> dict:
    return _plain(dataclasses.asdict(TrainConfig()))


def _repinned(resolved: dict, pins: dict, defaults: dict, prefix: str = "") -> tuple[dict, dict]:
    """(new pins, what moved): the keys pinned before plus every value off its default."""
    pinned = {k: v for k, v in resolved.items() if k in pins or v != defaults[k]}
    return pinned, {prefix + k: (pins.get(k), v) for k, v in pinned.items() if pins.get(k) != v}


def repin(paths: list[str]) -> None:
    """Re-pin the runs at `paths` after they were retrained on purpose, printing what moved, so the
    change to committed_configs.json is one reviewable diff. Any other path keeps its pin."""
    unknown = [p for p in paths if p not in BEFORE]
    if unknown:
        raise SystemExit(f"not pinned in committed_configs.json: {', '.join(unknown)}")
    for path in paths:
        before = BEFORE[path]
        resolved, train = resolve_stored(path, before["model"])
        config_defaults = _plain(dataclasses.asdict(make_config(MODELS.get(before["model"]).Config, {})))
        before["model_config"], moved = _repinned(resolved, before["model_config"], config_defaults)
        if train is not None:
            before["train"], train_moved = _repinned(train, before["train"], _train_defaults(), "train.")
            moved |= train_moved
        print(f"{path}: {moved or 'unchanged'}")
    (REPO / "tests" / "data" / "committed_configs.json").write_text(json.dumps(BEFORE, indent=0, sort_keys=True) + "\n")


@pytest.mark.parametrize("value, hint, expected", [
    ("true", bool, True), (0, bool, False), ("3", int, 3), (4.0, int, 4), ("1e3", int, 1000),
    (2**60 + 1, int, 2**60 + 1), ("0.5", float, 0.5), (" dopri5 ", str, "dopri5"),
    ("0.1,0.2", tuple, (0.1, 0.2)), ([64, 64], tuple, (64, 64)), ("a,b", tuple[str, ...], ("a", "b")),
    ("none", int | None, None), ("7", int | None, 7),
])
def test_coerce_by_type(value, hint, expected):
    out = coerce(value, hint, "k")
    assert out == expected and type(out) is type(expected)


@pytest.mark.parametrize("value, hint", [("maybe", bool), (2, bool), (1.5, int), ("nan", float),
                                         (float("inf"), float), ("x", float)])
def test_coerce_refuses_in_one_line(value, hint):
    with pytest.raises(UserError, match=r"^k=.* is not a valid"):
        coerce(value, hint, "k")


def test_models_and_perturbations_share_it():
    from zubov_bench.perturbations import params

    assert params.coerce is coerce
    node = MODELS.get("node")
    assert make_config(node.Config, {"steps": "8"}).steps == 8
    with pytest.raises(UserError, match="unknown config key"):
        make_config(node.Config, {"no_such_key": 1})
    with pytest.raises(UserError, match="unknown training key"):
        build_dataclass(TrainConfig, {"epoch": 3}, "training")


def test_dotted_keys_address_the_nested_configs_and_flat_keys_still_work():
    from zubov_bench.data import load_dataset
    from zubov_bench.models import create_model
    from zubov_bench.training import resolve_run_config

    resolved = resolve_run_config("zubov", "digits", None, {}, {"lyapunov.form": "bregman", "lyap_width": "48",
                                                                  "boundary.enabled": "false", "boundary.rays": "8"})
    cfg = resolved["model_config"]
    assert (cfg["lyap_form"], cfg["lyap_width"], cfg["boundary"], cfg["boundary_rays"]) == ("bregman", "48", "false", "8")
    assert not any("." in key for key in cfg)  # stored flat, as every committed checkpoint holds it
    model = create_model("zubov", load_dataset("digits").spec, **cfg)
    assert (model.lyap.cfg.form, model.lyap.cfg.width) == ("bregman", 48)
    assert (model.boundary_cfg.enabled, model.boundary_cfg.rays) == (False, 8)
    with pytest.raises(UserError, match="valid in boundary: enabled, rays"):
        resolve_run_config("zubov", "digits", None, {}, {"boundary.ray": "8"})
    with pytest.raises(UserError, match="unknown config section 'lyapunov'.*node"):
        resolve_run_config("node", "digits", None, {}, {"lyapunov.form": "bregman"})


def test_nested_configs_are_copied_by_name():
    """Every field of each sub-config comes from the flat field of that name (distinct values, so
    a swapped pair would show), and a sub field without its flat partner fails loudly."""
    from zubov_bench.config import Nested

    zubov = MODELS.get("zubov").Config
    for section, nested in zubov.nested.items():
        flat = zubov()
        sub_fields = dataclasses.fields(nested.cls)
        for i, f in enumerate(sub_fields):
            value = getattr(flat, nested.flat_name(f.name))
            marker = {bool: value, int: 1000 + i, float: 1000.5 + i, str: f"marker{i}"}[type(value)]
            object.__setattr__(flat, nested.flat_name(f.name), marker)
        built = nested.build(flat)
        for f in sub_fields:
            assert getattr(built, f.name) == getattr(flat, nested.flat_name(f.name)), (section, f.name)
    with pytest.raises(AttributeError):
        Nested(nested.cls, "no_such_prefix_").build(zubov())


if __name__ == "__main__":  # python tests/test_config.py PATH...: re-pin retrained runs (tests/data/README.md)
    import sys

    repin(sys.argv[1:])
