"""Reproduce presets: plain data (YAML), validated into a `Preset`.

The built-in presets live in `presets.yaml` next to this file. Users add their own with
`register_reproduce_preset(name, mapping)` or pass a YAML file to `--preset FILE.yaml`.
"""
from __future__ import annotations

import copy
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..errors import UserError
from ..registry import Registry

BUILTIN_FILE = Path(__file__).with_name("presets.yaml")
TOP_KEYS = {"description", "datasets", "models", "exclude", "seeds", "train", "model_config", "eval", "tradeoff",
            "roa", "notes", "expected_time", "threads", "jobs", "variants", "certify"}
EVAL_KEYS = {"n_samples", "batch_size", "seed", "grad_solver", "attacks", "transfer_source"}
ROA_KEYS = {"dataset", "models", "train", "model_config", "resolution", "horizon", "steps"}
CERTIFY_KEYS = {"method", "sigma", "n0", "n", "alpha", "radii", "n_samples", "batch_size", "seeds",
                "flow_samples", "flow_steps"}
CERTIFY_METHODS = ("smoothing", "lyapunov")
VARIANT_KEYS = {"model", "model_config", "train", "seeds", "grid"}
TRAIN_PREFIX = "train."  # a grid key with this prefix sweeps a training setting, not a model setting


@dataclass
class Variant:
    """One row of a sweep: a label (the method name in tables), the registered model it trains,
    and its own overrides on top of the preset's budgets."""

    label: str
    model: str
    model_config: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    seeds: list[int] | None = None  # None: the preset's seeds


@dataclass(frozen=True)
class AttackGroup:
    """Attack specs (as for `zubov-bench eval --attack`) evaluated at one severity grid."""

    attacks: tuple[str, ...]
    eps: tuple[float, ...] | None = None  # None: the dataset's grid (noises keep their own)
    seeds: tuple[int, ...] | None = None  # None: every checkpoint; else those of these training seeds

    def runs_on(self, train_seed: int) -> bool:
        return self.seeds is None or train_seed in self.seeds


@dataclass
class EvalPlan:
    n_samples: int = 500
    batch_size: int = 250
    seed: int = 0
    grad_solver: str | None = None  # None: deployed + an RK4 unroll for ODE models
    groups: list[AttackGroup] = field(default_factory=lambda: [AttackGroup(("all",))])
    transfer_source: str | None = "node"  # model whose checkpoint (same dataset, seed) is replayed


@dataclass(frozen=True)
class CertifyPlan:
    """One `zubov-bench certify` method run by reproduce after the evaluation, on the first
    n_samples of the same test subset, into the same results store."""

    method: str  # smoothing | lyapunov (lyapunov: only checkpoints whose model qualifies, by its traits)
    settings: tuple = ()  # (key, value) pairs passed to certify_checkpoints: sigma, n0, n, alpha, flow_*
    radii: tuple[float, ...] | None = None  # None: the dataset's default radii
    n_samples: int | None = None  # None: eval.n_samples
    batch_size: int = 1000
    seeds: tuple[int, ...] | None = None  # None: every checkpoint

    def runs_on(self, train_seed: int) -> bool:
        return self.seeds is None or train_seed in self.seeds

    def kwargs(self) -> dict:
        return dict(self.settings)


@dataclass
class RoAPlan:
    dataset: str = "toy2d"
    models: list[str] = field(default_factory=lambda: ["zubov"])
    train: dict = field(default_factory=dict)
    model_config: dict = field(default_factory=dict)
    resolution: int = 200
    horizon: float = 20.0
    steps: int = 400


@dataclass
class Preset:
    name: str
    description: str = ""
    datasets: list[str] = field(default_factory=lambda: ["digits"])
    models: list[str] | None = None  # None: every registered model, looked up at run time
    exclude: dict[str, str] = field(default_factory=dict)  # model -> why the preset leaves it out
    seeds: list[int] = field(default_factory=lambda: [0])
    train: dict = field(default_factory=dict)  # budget key -> train overrides (see budget_keys)
    model_config: dict = field(default_factory=dict)  # budget key -> model config overrides
    eval: EvalPlan = field(default_factory=EvalPlan)
    tradeoff: dict = field(default_factory=lambda: {"threat": "linf", "eps": None})
    roa: RoAPlan | None = None
    notes: list[str] = field(default_factory=list)
    expected_time: str = ""
    threads: int | None = None  # torch CPU threads per process (None: torch's default)
    jobs: int = 1  # worker processes for training runs and checkpoint evaluations
    variants: dict[str, Variant] = field(default_factory=dict)  # label -> variant (a sweep); empty: models
    certify: list[CertifyPlan] = field(default_factory=list)  # run after the evaluation of each checkpoint
    source: dict = field(default_factory=dict)  # the mapping it was built from

    def default_models(self) -> list[str]:
        """The preset's models (a sweep: its variant labels), else every registered model, looked up
        now, except the ones the preset excludes."""
        from ..models import MODELS

        return list(self.models or [m for m in MODELS.names() if m not in self.exclude])

    def variant(self, label: str) -> Variant:
        """The variant with this label; a plain model name is the variant of itself."""
        return self.variants.get(label) or Variant(label, label)

    def train_overrides(self, model: str, dataset: str) -> dict:
        return _layered(self.train, model, dataset)

    def model_overrides(self, model: str, dataset: str) -> dict:
        return _layered(self.model_config, model, dataset)


def budget_keys(model: str, dataset: str) -> list[str]:
    """Override keys, weakest first: default < @dataset < model < model@dataset."""
    return ["default", f"@{dataset}", model, f"{model}@{dataset}"]


def _layered(table: dict, model: str, dataset: str) -> dict:
    out: dict = {}
    for key in budget_keys(model, dataset):
        out.update(table.get(key) or {})
    return out


def _require(condition: bool, name: str, message: str) -> None:
    if not condition:
        raise UserError(f"reproduce preset {name!r}: {message}")


def _check_keys(name: str, where: str, data: dict, allowed: set) -> None:
    _require(isinstance(data, dict), name, f"{where} must be a mapping")
    unknown = sorted(set(data) - allowed)
    _require(not unknown, name, f"unknown key(s) {', '.join(unknown)} in {where}; "
                                f"allowed: {', '.join(sorted(allowed))}")


def _int_list(name: str, key: str, value) -> list[int]:
    items = value if isinstance(value, list) else [value]
    _require(all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items) and items,
             name, f"{key} must be a non-empty list of integers >= 0")
    return list(items)


def _str_list(name: str, key: str, value) -> list[str]:
    items = value if isinstance(value, list) else [value]
    _require(all(isinstance(v, str) and v for v in items) and items, name, f"{key} must be a list of names")
    return list(items)


def _exclusions(name: str, value) -> dict[str, str]:
    """{model: reason}: models left out of `models: all` (the README states the reason)."""
    value = value or {}
    _require(isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in value.items()),
             name, "exclude must map model names to the reason they are left out")
    return dict(value)


def _overrides(name: str, key: str, value) -> dict:
    value = value or {}
    _require(isinstance(value, dict) and all(isinstance(v, dict) for v in value.values()), name,
             f"{key} must map 'default', 'MODEL', '@DATASET' or 'MODEL@DATASET' to a mapping")
    return copy.deepcopy(value)


def _attack_groups(name: str, items) -> list[AttackGroup]:
    """A list of attack specs; an item may be {attack: SPEC, eps: [..], seeds: [..]} for its own grid
    and only the checkpoints of those training seeds."""
    _require(isinstance(items, list) and items, name, "eval.attacks must be a non-empty list")
    grids: dict[tuple, list[str]] = {}
    for item in items:
        if isinstance(item, dict):
            _check_keys(name, "an eval.attacks item", item, {"attack", "eps", "seeds"})
            spec, eps, seeds = item.get("attack"), item.get("eps"), item.get("seeds")
        else:
            spec, eps, seeds = item, None, None
        _require(isinstance(spec, str) and spec.strip(), name, f"bad attack item {item!r}")
        if eps is not None:
            try:
                eps = tuple(float(e) for e in (eps if isinstance(eps, list) else [eps]))
            except (TypeError, ValueError):
                eps = (0.0,)
            _require(all(e > 0 for e in eps), name, f"eps of {spec} must be numbers > 0")
        if seeds is not None:
            seeds = tuple(sorted(set(_int_list(name, f"seeds of {spec}", seeds))))
        grids.setdefault((eps, seeds), []).append(spec.strip())
    return [AttackGroup(tuple(specs), eps, seeds) for (eps, seeds), specs in grids.items()]


def _eval_plan(name: str, data: dict) -> EvalPlan:
    _check_keys(name, "eval", data, EVAL_KEYS)
    plan = EvalPlan()
    for key in ("n_samples", "batch_size", "seed"):
        if key in data:
            value, low = data[key], 0 if key == "seed" else 1
            _require(isinstance(value, int) and not isinstance(value, bool) and value >= low,
                     name, f"eval.{key} must be an integer >= {low}")
            setattr(plan, key, value)
    plan.grad_solver = data.get("grad_solver")
    plan.transfer_source = data.get("transfer_source", plan.transfer_source)
    if "attacks" in data:
        plan.groups = _attack_groups(name, data["attacks"])
    return plan


def _certify_plans(name: str, data, plan: EvalPlan) -> list[CertifyPlan]:
    """A list of {method: smoothing|lyapunov, ...} (the options of `zubov-bench certify`), checked now."""
    from ..evaluation.certify import SmoothingSettings, parse_radii

    if data is None:
        return []
    items = data if isinstance(data, list) else [data]
    out = []
    for item in items:
        _check_keys(name, "a certify item", item, CERTIFY_KEYS)
        method = item.get("method")
        _require(method in CERTIFY_METHODS, name, f"certify method must be one of {', '.join(CERTIFY_METHODS)}, "
                                                  f"got {method!r}")
        ints = {}
        for key, low in (("n0", 1), ("n", 1), ("n_samples", 1), ("batch_size", 1), ("flow_samples", 0),
                         ("flow_steps", 0)):
            if key in item:
                value = item[key]
                _require(isinstance(value, int) and not isinstance(value, bool) and value >= low, name,
                         f"certify.{key} must be an integer >= {low}")
                ints[key] = value
        own = {"smoothing": ("n0", "n", "sigma", "alpha"), "lyapunov": ("flow_samples", "flow_steps")}
        other = [k for k in item if k in {key for keys in own.values() for key in keys} and k not in own[method]]
        _require(not other, name, f"certify {method}: {', '.join(other)} belong(s) to the other method")
        settings = {k: v for k, v in ints.items() if k in own[method]}
        if method == "smoothing":
            try:
                smoothing = SmoothingSettings(item.get("sigma", 0.25), ints.get("n0", 100), ints.get("n", 1000),
                                              item.get("alpha", 0.001)).validate()
            except UserError as exc:
                raise UserError(f"reproduce preset {name!r}: certify smoothing: "
                                f"{str(exc).replace('--', '')}") from None
            settings.update(sigma=float(smoothing.sigma), alpha=float(smoothing.alpha))
        radii = item.get("radii")
        try:
            radii = parse_radii(",".join(map(str, radii)) if isinstance(radii, list) else radii)
        except UserError:
            radii = None
            _require(False, name, "certify.radii must be a list of numbers >= 0")
        n_samples = ints.get("n_samples")
        _require(n_samples is None or n_samples <= plan.n_samples, name,
                 f"certify.n_samples {n_samples} exceeds eval.n_samples {plan.n_samples}: certificates are "
                 "made on (the first of) the evaluated examples")
        seeds = tuple(sorted(set(_int_list(name, "certify.seeds", item["seeds"])))) if "seeds" in item else None
        out.append(CertifyPlan(method, tuple(sorted(settings.items())), radii, n_samples,
                               ints.get("batch_size", 1000), seeds))
    return out


def _roa_plan(name: str, data) -> RoAPlan | None:
    if data is None:
        return None
    _check_keys(name, "roa", data, ROA_KEYS)
    plan = RoAPlan(**{k: copy.deepcopy(v) for k, v in data.items()})
    plan.models = _str_list(name, "roa.models", plan.models)
    _require(int(plan.resolution) >= 10 and int(plan.steps) >= 1 and float(plan.horizon) > 0, name,
             "roa needs resolution >= 10, steps >= 1 and horizon > 0")
    return plan


def _grid_points(name: str, label: str, grid) -> list[tuple[str, dict, dict]]:
    """{key: [values]} -> (label suffix, model config, train overrides) per point of the product."""
    if not grid:
        return [("", {}, {})]
    _require(isinstance(grid, dict) and all(isinstance(v, list) and v for v in grid.values()), name,
             f"variant {label!r}: grid must map setting names to non-empty lists of values")
    points = []
    for values in itertools.product(*grid.values()):
        model_config, train, suffix = {}, {}, ""
        for key, value in zip(grid, values):
            setting = key.removeprefix(TRAIN_PREFIX)
            (train if setting != key else model_config)[setting] = value
            suffix += f"-{setting}={value}"
        points.append((suffix, model_config, train))
    return points


def _variants(name: str, data) -> dict[str, Variant]:
    """label -> {model, model_config, train, seeds, grid}; a grid expands into one variant per point."""
    if data is None:
        return {}
    _require(isinstance(data, dict) and data, name, "variants must map labels to settings")
    out: dict[str, Variant] = {}
    for label, spec in data.items():
        spec = {} if spec is None else spec
        _check_keys(name, f"variant {label!r}", spec, VARIANT_KEYS)
        model = spec.get("model", label)
        _require(isinstance(model, str) and model, name, f"variant {label!r}: model must be a model name")
        for key in ("model_config", "train"):
            _require(isinstance(spec.get(key) or {}, dict), name, f"variant {label!r}: {key} must be a mapping")
        seeds = _int_list(name, f"variant {label!r}: seeds", spec["seeds"]) if "seeds" in spec else None
        for suffix, model_config, train in _grid_points(name, str(label), spec.get("grid")):
            full = f"{label}{suffix}"
            _require(full not in out, name, f"two variants are labelled {full!r}")
            out[full] = Variant(full, model, {**copy.deepcopy(spec.get("model_config") or {}), **model_config},
                                {**copy.deepcopy(spec.get("train") or {}), **train}, seeds)
    return out


def parse_preset(name: str, data: dict) -> Preset:
    """Validate a preset mapping (as in presets.yaml) into a Preset; UserError on any mistake."""
    _check_keys(name, "the preset", data, TOP_KEYS)
    variants = _variants(name, data.get("variants"))
    _require(not (variants and "models" in data), name, "give either models or variants, not both")
    models = list(variants) if variants else data.get("models", "all")
    tradeoff = {"threat": "linf", "eps": None, **(data.get("tradeoff") or {})}
    _require(tradeoff["threat"] in ("linf", "l2"), name, "tradeoff.threat must be linf or l2")
    seeds = _int_list(name, "seeds", data.get("seeds", [0]))
    trained = set(seeds).union(*(v.seeds or () for v in variants.values()))
    plan = _eval_plan(name, data.get("eval") or {})
    certify = _certify_plans(name, data.get("certify"), plan)
    for what, narrowed in [(", ".join(g.attacks), g.seeds) for g in plan.groups] + \
            [(f"certify {c.method}", c.seeds) for c in certify]:
        unknown = sorted(set(narrowed or ()) - trained)
        _require(not unknown, name, f"{what}: seeds {unknown} are not trained by this preset "
                                    f"(its seeds: {', '.join(map(str, sorted(trained)))})")
    threads, jobs = data.get("threads"), data.get("jobs", 1)
    for key, value in (("threads", threads), ("jobs", jobs)):
        _require(value is None or (isinstance(value, int) and not isinstance(value, bool) and value >= 1),
                 name, f"{key} must be an integer >= 1")
    return Preset(
        name=name,
        description=str(data.get("description", "")),
        datasets=_str_list(name, "datasets", data.get("datasets", ["digits"])),
        models=None if models == "all" else _str_list(name, "models", models),
        exclude=_exclusions(name, data.get("exclude")),
        seeds=seeds,
        train=_overrides(name, "train", data.get("train")),
        model_config=_overrides(name, "model_config", data.get("model_config")),
        eval=plan,
        tradeoff=tradeoff,
        roa=_roa_plan(name, data.get("roa")),
        notes=[str(n) for n in data.get("notes") or []],
        expected_time=str(data.get("expected_time", "")),
        threads=threads,
        jobs=jobs,
        variants=variants,
        certify=certify,
        source=copy.deepcopy(data),
    )


def _load_builtin() -> None:
    if not BUILTIN_FILE.is_file():
        raise UserError(f"the built-in presets file {BUILTIN_FILE} is missing from this installation; "
                        "reinstall zubov-bench (pip install -e .)")
    for name, data in (yaml.safe_load(BUILTIN_FILE.read_text()) or {}).items():
        PRESETS.register(name, parse_preset(name, data))


PRESETS: Registry = Registry("reproduce preset", loader=_load_builtin)


def register_reproduce_preset(name: str, data: dict, *, replace: bool = False) -> Preset:
    """Add a preset from a mapping with the keys of presets.yaml; returns the parsed Preset."""
    preset = parse_preset(name, data)
    PRESETS.register(name, preset, replace=replace)
    return preset


def load_preset(name_or_file: str) -> Preset:
    """A registered preset by name, or the single preset in a YAML file (`--preset my.yaml`)."""
    path = Path(name_or_file)
    if path.suffix in (".yaml", ".yml"):
        if not path.is_file():
            raise UserError(f"preset file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            raise UserError(f"cannot parse preset file {path}: {str(exc).splitlines()[0]}") from None
        if not isinstance(data, dict) or not data:
            raise UserError(f"preset file {path} must hold a mapping")
        if TOP_KEYS.isdisjoint(data) and len(data) == 1:  # {name: {...}}
            (name, data), = data.items()
            return parse_preset(str(name), data)
        return parse_preset(path.stem, data)
    return PRESETS.get(name_or_file)
