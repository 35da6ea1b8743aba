"""The architecture, checked: the import graph follows the layers, models and perturbations carry
their own traits, and moving the model recipes onto the classes changed no committed run's config."""
from __future__ import annotations

import ast
from dataclasses import fields
from pathlib import Path

import pytest

from zubov_bench.models import MODELS, ODEModel, register_model
from zubov_bench.models.layers import MLPField
from zubov_bench.models.protocols import LYAPUNOV_MEMBERS, LyapunovModel
from zubov_bench.perturbations import PERTURBATIONS
from zubov_bench.perturbations.base import KINDS

REPO = Path(__file__).resolve().parents[1]
# Lower layers never import higher ones (lazy imports inside functions included); `zubov_bench`
# itself (the package's Python API) may import anything, and `__version__` is read from it by all
LAYERS = ("foundation", "data", "models", "perturbations", "training/evaluation", "reports", "reproduce", "cli")
FOUNDATION = {"errors", "registry", "io", "device", "records", "workers", "config", "provenance"}
SUBPACKAGE_LAYER = {"data": "data", "models": "models", "checkpoint": "models", "perturbations": "perturbations",
                    "training": "training/evaluation", "evaluation": "training/evaluation",
                    "presets": "training/evaluation", "reports": "reports", "reproduce": "reproduce",
                    "cli": "cli", "__main__": "cli", "api": "api"}  # zubov_bench.api: the notebook API
API = "api"


def source_modules() -> dict[str, Path]:
    out = {}
    for root in ("zubov_bench", "baselines"):
        for path in sorted((REPO / root).rglob("*.py")):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


MODULES = source_modules()


def _known(name: str) -> str:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name


def imports(module: str, path: Path) -> set[tuple[str, str, bool]]:
    """(imported module, imported name, lazy) for every import statement in the file; lazy: inside
    a function, so it runs on call, not when the module is imported."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = set()

    def visit(node, lazy: bool):
        if isinstance(node, ast.Import):
            out.update((_known(a.name), "", lazy) for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.add((full, "", lazy) if full in MODULES else (_known(base), alias.name, lazy))
        lazy = lazy or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        for child in ast.iter_child_nodes(node):
            visit(child, lazy)

    visit(ast.parse(path.read_text(), str(path)), False)
    return {(target, name, lazy) for target, name, lazy in out if target and target != module}


GRAPH = {module: imports(module, path) for module, path in MODULES.items()}


def layer(module: str, name: str = "") -> str:
    parts = module.split(".")
    if parts[0] == "baselines":
        return "models"  # plugins of the models layer, loaded through entry points
    if len(parts) == 1:
        return "foundation" if name == "__version__" else API
    return "foundation" if parts[1] in FOUNDATION else SUBPACKAGE_LAYER[parts[1]]


def test_every_module_has_a_layer():
    for module in MODULES:
        assert layer(module) in LAYERS + (API,), module


def test_no_import_points_up_the_layers():
    rank = {name: i for i, name in enumerate(LAYERS)}
    rank[API] = len(LAYERS)
    upward = [f"{module} ({layer(module)}) imports {target} ({layer(target, name)})"
              for module, targets in GRAPH.items() for target, name, _ in targets
              if rank[layer(target, name)] > rank[layer(module)]]
    assert not upward, "\n".join(upward)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt, path + [nxt])
                if found:
                    return found
        state[node] = 2
        return None

    for module in sorted(graph):
        if module not in state:
            found = visit(module, [module])
            if found:
                return found
    return None


def _package(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_no_cycle_between_packages():
    """Lazy imports included: data, models, perturbations, training, evaluation, ... and the
    baselines never import each other in a circle (the layers above say which way they point)."""
    graph: dict[str, set[str]] = {}
    for module, targets in GRAPH.items():
        for target, name, _ in targets:
            if _package(target) != _package(module) and layer(target, name) != "foundation":
                graph.setdefault(_package(module), set()).add(_package(target))
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle between packages: " + " -> ".join(cycle)


def test_no_cycle_between_modules_at_import_time():
    """Within a package, a function may import back lazily; importing a module never cycles."""
    graph = {m: {t for t, n, lazy in GRAPH[m] if not lazy and not (t == "zubov_bench" and n == "__version__")}
             for m in GRAPH}
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_core_never_imports_the_baselines():
    offenders = [f"{m} imports {t}" for m, targets in GRAPH.items() if m.startswith("zubov_bench")
                 for t, _, _ in targets if t.split(".")[0] == "baselines"]
    assert not offenders
    for path in (REPO / "zubov_bench").rglob("*.py"):  # nor by name, e.g. importlib.import_module("baselines")
        assert '"baselines' not in path.read_text(), path


def test_the_graph_reader_sees_lazy_relative_and_package_imports(tmp_path):
    code = "from .base import BenchModel\ndef f():\n    from ..reports import labels\n    from .. import cli\n"
    path = tmp_path / "x.py"
    path.write_text(code)
    found = imports("zubov_bench.models.x", path)
    assert ("zubov_bench.reports.labels", "", True) in found and ("zubov_bench.cli", "", True) in found
    assert ("zubov_bench.models.base", "BenchModel", False) in found
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert layer("zubov_bench.reports.labels") == "reports" and layer("zubov_bench.models.x") == "models"


# --- traits ------------------------------------------------------------------------------------
def test_every_perturbation_declares_consistent_traits():
    probes = [name for name, cls in PERTURBATIONS.items() if cls.large_eps_check]
    assert probes == ["pgd"]  # sanity check 1 runs one attack
    for name, cls in PERTURBATIONS.items():
        assert cls.kind in KINDS and cls.label() and isinstance(cls.cost_rank(), int), name
        if cls.needs_source:
            assert "source" in {f.name for f in fields(cls.Params)}, name
            cls()  # creating it loads nothing: no source is needed yet
        if cls.kind == "noise":
            assert cls.cost_rank() == 0, name  # noises run first
    assert all(PERTURBATIONS.get(n).severity_symbol for n in ("gaussian", "uniform", "salt-pepper"))
    assert PERTURBATIONS.get("autoattack").ensemble and PERTURBATIONS.get("transfer").needs_source


def test_the_evaluation_order_is_the_cost_rank():
    ranks = {name: cls.cost_rank() for name, cls in PERTURBATIONS.items()}
    assert ranks["gaussian"] == 0 < ranks["fgsm"] < ranks["pgd"] < ranks["transfer"] < ranks["lyapunov"]
    assert ranks["lyapunov"] == ranks["autoattack"] < ranks["square"]


# --- the Lyapunov contract ---------------------------------------------------------------------
def test_registered_lyapunov_models_provide_the_protocol():
    declared = [name for name, cls in MODELS.items() if cls.has_lyapunov]
    assert {"zubov", "stable"} <= set(declared)
    for name in declared:
        assert all(hasattr(MODELS.get(name), member) for member in LYAPUNOV_MEMBERS), name
    assert set(LYAPUNOV_MEMBERS) >= {"lyapunov", "equilibria", "vector_field", "initial_state_logits", "solve"}
    assert all(callable(getattr(LyapunovModel, m, None)) or m == "equilibria" for m in LYAPUNOV_MEMBERS)


def test_a_model_that_declares_lyapunov_structure_and_misses_a_method_fails_at_registration():
    class HalfLyapunov(ODEModel):
        has_lyapunov = True

        def __init__(self, spec, cfg):
            super().__init__(spec, cfg, MLPField(cfg.d, cfg.field_hidden, cfg.field_act))

        def lyapunov(self, z, cls=None):
            return z.pow(2).sum(1)

    with pytest.raises(TypeError, match="equilibria.*vector_field.*initial_state_logits"):
        register_model("arch-test-half-lyapunov")(HalfLyapunov)
    assert "arch-test-half-lyapunov" not in MODELS


def test_malformed_recipes_fail_at_registration():
    class BadRecipe(ODEModel):
        recipes = {"digits": {"optimizer": {"lr": 1.0}}}  # only "train" and "model" exist

    class MisspeltRecipe(ODEModel):
        recipes = {"*": {"model": {"stpes": 20}}}  # not a field of ODEConfig

    with pytest.raises(TypeError, match="recipes"):
        register_model("arch-test-bad-recipe")(BadRecipe)
    with pytest.raises(TypeError, match="stpes not in ODEConfig"):
        register_model("arch-test-misspelt-recipe")(MisspeltRecipe)
    assert "arch-test-bad-recipe" not in MODELS and "arch-test-misspelt-recipe" not in MODELS


def test_recipes_are_not_inherited():
    """FxTS subclasses LyaNet; each states its own recipe (a subclass may train differently)."""
    from zubov_bench.models.registry import model_recipes

    assert model_recipes("fxts", "digits") == [{"train": {"epochs": 30}, "model": {"field_form": "simplex"}}]
    assert model_recipes("node", "digits") == [] and model_recipes("no-such-model", "digits") == []


# --- committed runs resolve to the configs they were trained with ------------------------------
# A preset's plan resolved now against the reproduce-plan.json stored beside each committed
# checkpoint: a recipe or preset changed without regenerating its committed results shows here.


@pytest.mark.parametrize("preset_name,out", [("quick", "quick"), ("fashion-mnist", "fashion-mnist"),
                                             ("results/zubov-study/fashion-mnist.yaml", "zubov-study/fashion-mnist")])
def test_committed_runs_resolve_to_their_stored_configs(preset_name, out):
    from zubov_bench.reproduce.pipeline import plan_roa_runs, plan_runs
    from zubov_bench.reproduce.preset import load_preset
    from zubov_bench.reproduce.training import config_mismatch

    preset = load_preset(str(REPO / preset_name) if preset_name.endswith(".yaml") else preset_name)
    root = REPO / "results" / out / "checkpoints"
    names = preset.default_models()
    runs = plan_runs(preset, names, root) + plan_roa_runs(preset, names, root)
    committed = [run for run in runs if run.run_dir.is_dir()]
    assert len(committed) == len(runs) >= 7
    mismatches = {f"{preset_name}/{run.name}": config_mismatch(run) for run in committed}
    assert {k: v for k, v in mismatches.items() if v} == {}
