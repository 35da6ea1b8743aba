"""Tables, figures and RoA/IoU, from a small synthetic records file and a hand-built 2-D model."""
from __future__ import annotations

import csv
import io
import json
import math
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from zubov_bench.models.ode import CountingField, SolverConfig, SolverMixin, integrate
from zubov_bench.records import Record
from zubov_bench.reports import build_tables, compute_roa, load_records, plot_results, render, roa_figure
from zubov_bench.reports.plots import save_figure
from zubov_bench.reports.roa import assign_to_equilibria, region_iou

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
BASE = {"zubov": 0.90, "node": 0.94}  # clean accuracy per method
SHIFT = {0: 0.0, 1: -0.02}  # second train seed a little worse


def _record(method, seed, pert, threat, sev, robust, solver="deployed", sanity=None):
    return Record(model=method, method=method, dataset="digits", checkpoint=f"ckpt/{method}-s{seed}.pt",
                  checkpoint_sha256=f"{method}{seed}" * 4, train_seed=seed, perturbation=pert, threat=threat,
                  severity=sev, seed=0, grad_solver=solver, n=200, clean_acc=BASE[method] + SHIFT[seed],
                  robust_acc=robust, sanity=sanity or {"robust_le_clean": {"ok": True, "detail": ""}})


def synthetic_records() -> list[Record]:
    """Two methods x two train seeds; noise, FGSM, PGD through two solvers, Square, worst case."""
    out = []
    for method, clean in BASE.items():
        drop = 1.0 if method == "node" else 0.5  # Zubov-Net degrades more slowly
        for seed, shift in SHIFT.items():
            acc = lambda loss: round(max(clean + shift - drop * loss, 0.0), 4)  # noqa: E731
            for sigma in (0.1, 0.2):
                out.append(_record(method, seed, "gaussian", "noise", sigma, acc(0.2 * sigma), "none"))
            for eps in (0.1, 0.2):
                out.append(_record(method, seed, "fgsm", "linf", eps, acc(eps)))
                out.append(_record(method, seed, "pgd", "linf", eps, acc(1.5 * eps)))
                out.append(_record(method, seed, "pgd", "linf", eps, acc(1.8 * eps), "rk4:20"))
                out.append(_record(method, seed, "square", "linf", eps, acc(0.8 * eps), "none"))
                out.append(_record(method, seed, "worst-case", "linf", eps, acc(2.0 * eps), "all"))
            out.append(_record(method, seed, "pgd", "l2", 1.0, acc(0.3)))
    bad = {"monotone_eps": {"ok": False, "detail": "robust accuracy rises with eps"}}
    out.append(_record("zubov", 0, "fgsm", "l2", 1.0, 0.7, sanity=bad))
    return out


@pytest.fixture
def results_dir(tmp_path) -> Path:
    folder = tmp_path / "results"
    folder.mkdir()
    lines = [json.dumps(r.to_dict()) for r in synthetic_records()]
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def _tables(results_dir, **kw):
    return build_tables(load_records(results_dir), **kw)


# --- tables -----------------------------------------------------------------------------------
def test_cells_take_worst_solver_and_average_seeds(results_dir):
    (table,) = _tables(results_dir)
    pgd = next(c for c in table.columns if c.key == ("pgd", "linf", 0.1))
    cell = table.cell("node", pgd)
    # node: the rk4 unroll (loss 1.8*eps) beats deployed (1.5*eps); seeds 0.76 and 0.74
    assert sorted(cell.values.values()) == pytest.approx([0.74, 0.76])
    assert cell.mean == pytest.approx(0.75) and cell.std == pytest.approx(math.sqrt(2e-4))
    assert table.cell("zubov", pgd).best and not cell.best  # 0.80 beats 0.75


def test_markdown_groups_bold_std_and_dagger(results_dir):
    text = render(_tables(results_dir), "md")
    header = next(line for line in text.splitlines() if line.startswith("| Method"))
    assert "PGD L∞ (ε)" in header and "Gaussian (σ)" in header and "Worst case L∞ (ε)" in header
    assert "**80.0 ± 1.4**" in text  # Zubov-Net's PGD at 0.1, best in its column
    assert "70.0†" in text and "monotone_eps" in text
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len({row.count(" | ") for row in rows}) == 1  # same column count everywhere


def test_caption_names_columns_on_a_smaller_subset():
    """The eps = 1 sanity PGD runs on fewer examples: the caption says where, and clean is the full n."""
    records = [_record(m, 0, "pgd", "linf", 0.1, 0.5) for m in BASE]
    sanity = [_record(m, 0, "pgd", "linf", 1.0, 0.0) for m in BASE]
    for r in records:
        r.n = 1000
    for r in sanity:
        r.n, r.clean_acc = 200, 0.1  # a different subset, so another clean accuracy
    (table,) = build_tables(records + sanity)
    assert "n = 1000 (PGD L∞ (ε) 1: 200) test examples" in table.notes[0]
    clean = table.columns[0]
    assert table.cell("node", clean).n == {1000}
    assert table.cell("node", clean).mean == pytest.approx(BASE["node"])


def test_grad_solver_filter_keeps_noise_and_drops_unions(results_dir):
    (table,) = _tables(results_dir, grad_solvers=("deployed",))
    keys = {c.key[0] for c in table.columns}
    assert "worst-case" not in keys and {"gaussian", "square", "pgd"} <= keys
    pgd = next(c for c in table.columns if c.key == ("pgd", "linf", 0.1))
    assert table.cell("node", pgd).mean == pytest.approx(0.78)  # deployed only: 0.79 and 0.77


def test_worst_case_table_puts_union_beside_attacks(results_dir):
    (table,) = _tables(results_dir, worst_case=True)
    groups = [g for g, _ in table.groups()]
    assert groups == ["", "L∞ ε = 0.1", "L∞ ε = 0.2", "L₂ ε = 1"]
    labels = [c.label for c in table.columns if c.group == "L∞ ε = 0.1"]
    assert labels == ["FGSM", "PGD", "Square", "Worst case"]
    union = table.columns[labels.index("Worst case") + 1]
    assert all(table.cell(m, union).mean <= min(table.cell(m, c).mean for c in table.columns
                                                if c.group == union.group) for m in table.methods)


def _latex_structure(tex: str) -> None:
    assert tex.count(r"\toprule") == tex.count(r"\midrule") == tex.count(r"\bottomrule") == 1
    body = tex.split(r"\toprule")[1].split(r"\bottomrule")[0]
    spec = re.search(r"\\begin\{tabular\}\{([lrc]+)\}", tex).group(1)
    for row in (r for r in body.split(r"\\") if "&" in r):
        spans = [int(n) for n in re.findall(r"\\multicolumn\{(\d+)\}", row)]
        n_cells = row.count("&") + 1 - len(spans) + sum(spans)
        assert n_cells == len(spec), row
    depth = 0
    for ch in re.sub(r"\\[{}]", "", tex):
        depth += {"{": 1, "}": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert re.search(r"(?<!\\)_", tex.replace("$_", "")) is None  # underscores escaped outside math


@pytest.mark.parametrize("worst_case", [False, True])
def test_latex_structure(results_dir, worst_case):
    tables = _tables(results_dir, worst_case=worst_case)
    for t in tables:
        t.methods = [m.replace("zubov", "zubov_net") for m in t.methods]
        t.cells = {(k[0].replace("zubov", "zubov_net"), k[1]): v for k, v in t.cells.items()}
    tex = render(tables, "latex")
    _latex_structure(tex)
    first_group = r"\cmidrule(lr){3-6}" if worst_case else r"\cmidrule(lr){3-4}"
    assert r"zubov\_net" in tex and first_group in tex
    assert r"\multicolumn{" in tex and r"$^\dagger$" in tex and r"\textbf{" in tex


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_latex_compiles(results_dir, tmp_path):
    body = render(_tables(results_dir), "latex")
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n" \
          "\\begin{document}\n" + body + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "t.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-2000:]


def test_csv_is_tidy(results_dir):
    rows = list(csv.DictReader(io.StringIO(render(_tables(results_dir), "csv"))))
    clean = [r for r in rows if r["perturbation"] == "clean" and r["method"] == "zubov"]
    assert len(clean) == 1 and float(clean[0]["mean"]) == pytest.approx(0.89)
    assert {r["sanity_failed"] for r in rows} == {"", "monotone_eps"}


def _cli(*args):
    from click.testing import CliRunner

    from zubov_bench.cli import main

    return CliRunner().invoke(main, [str(a) for a in args])


def test_cli_table_and_errors(results_dir, tmp_path):
    out = tmp_path / "t.tex"
    done = _cli("table", "--results", results_dir, "--format", "latex", "--out", out)
    assert done.exit_code == 0, done.output
    _latex_structure(out.read_text())
    bad = _cli("table", "--results", results_dir, "--dataset", "cifar10")
    assert bad.exit_code == 2 and "error: no records match dataset 'cifar10'" in bad.output
    missing = _cli("table", "--results", tmp_path / "nowhere")
    assert missing.exit_code == 2 and "results folder not found" in missing.output


def test_shards_and_duplicates_are_ignored(results_dir):
    partial = synthetic_records()[0]
    partial.shard, partial.robust_acc = "1/2", 0.0
    with open(results_dir / "records.jsonl", "a") as fh:
        fh.write(json.dumps(partial.to_dict()) + "\n")
    loaded = load_records(results_dir)
    assert sorted(r.id for r in loaded) == sorted(r.id for r in synthetic_records())


# --- figures ----------------------------------------------------------------------------------
def _is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG_MAGIC and path.stat().st_size > 10_000


def test_plots_written_as_png_and_pdf(results_dir, tmp_path):
    paths = plot_results(load_records(results_dir), tmp_path / "fig", eps=0.2)
    names = sorted(p.name for p in paths)
    assert names == ["severity-digits.pdf", "severity-digits.png", "tradeoff-digits.pdf", "tradeoff-digits.png"]
    for p in paths:
        assert _is_png(p) if p.suffix == ".png" else p.read_bytes()[:5] == b"%PDF-"


def test_the_same_records_give_the_same_figure_bytes(results_dir, tmp_path):
    """A regenerated store is compared file by file with the committed one (`zubov-bench diff`):
    a PDF that stamped its creation time would differ on every run."""
    records = load_records(results_dir)
    first, second = (plot_results(records, tmp_path / name, eps=0.2) for name in ("a", "b"))
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]


def test_plot_rejects_unknown_eps(results_dir, tmp_path):
    from zubov_bench.errors import UserError

    with pytest.raises(UserError, match="available: 0.1, 0.2"):
        plot_results(load_records(results_dir), tmp_path, eps=0.3)


# --- regions of attraction --------------------------------------------------------------------
class DoubleWell(SolverMixin, nn.Module):
    """dz/dt = (x - x^3, -y): stable equilibria (-1, 0) and (1, 0), separatrix x = 0.

    V_k(z) = ||z - e_k||^2 and c = 1, so PRoA_k is the unit disc around e_k, inside the half plane
    RoA_k. On [-2, 2]^2 the IoU is pi / 8 for both classes, and every PRoA point reaches its e_k.
    """

    def __init__(self):
        super().__init__()
        self.odefunc = CountingField(lambda t, z: self.vector_field(z))
        self.solver = SolverConfig("rk4", 10)
        self.register_buffer("equilibria", torch.tensor([[-1.0, 0.0], [1.0, 0.0]]))
        self.cfg = type("Cfg", (), {"level": 1.0})()

    def vector_field(self, z):
        return torch.stack([z[:, 0] - z[:, 0] ** 3, -z[:, 1]], 1)

    def lyapunov(self, z, cls=None):
        return (z[:, None, :] - self.equilibria).pow(2).sum(-1)

    def solve(self, z0, times=None):
        return integrate(self.odefunc, z0, self.solver, times)

    # The rest of the LyapunovModel protocol: the state space is the input space.
    has_lyapunov = True

    def features(self, x):
        return x

    def grid(self, n_points):
        return torch.linspace(0.0, 1.0, n_points)

    def initial_state_logits(self, x):
        return -self.lyapunov(x)


def test_roa_iou_matches_the_analytic_answer():
    model = DoubleWell()
    result = compute_roa(model, (-2.0, 2.0, -2.0, 2.0), resolution=81, horizon=20.0, steps=100)
    assert model.nfe == 4 * 100  # one batched solve for the whole grid
    assert (result.roa[:, result.xs < -1e-6] == 0).all()
    assert (result.roa[:, result.xs > 1e-6] == 1).all()
    assert (result.roa[:, np.abs(result.xs) < 1e-6] == -1).all()  # the separatrix reaches neither
    assert result.iou == pytest.approx([math.pi / 8] * 2, abs=0.015)
    assert result.proa_in_roa == pytest.approx([1.0, 1.0])
    assert result.eq_max_real_eig == pytest.approx([-1.0, -1.0], abs=1e-5)  # df/dz = diag(1 - 3x^2, -1)


def test_assignment_and_iou_on_hand_made_masks():
    eq = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    end = torch.tensor([[0.98, 0.0], [-1.0, 0.01], [0.0, 0.0], [float("nan"), 0.0]])
    assert assign_to_equilibria(end, eq, 0.1).tolist() == [0, 1, -1, -1]
    proa = np.zeros((2, 4, 4), bool)
    proa[0, :, :2] = True  # PRoA 0 on the left half, where the flow goes to e_1: IoU 0
    roa = np.ones((4, 4), int)
    roa[:, 2:] = 0
    iou, inside = region_iou(proa, roa)
    assert iou.tolist() == [0.0, 0.0] and inside[0] == 0.0 and math.isnan(inside[1])
    proa[1] = roa == 1  # PRoA 1 exactly RoA 1
    assert region_iou(proa, roa)[0].tolist() == [0.0, 1.0]


def test_roa_figure_is_written(tmp_path):
    model = DoubleWell()
    result = compute_roa(model, (-2.0, 2.0, -2.0, 2.0), resolution=31, horizon=10.0, steps=40)
    paths = save_figure(roa_figure(model, result, "double well"), tmp_path, "roa")
    assert _is_png(paths[0]) and paths[1].stat().st_size > 5_000


def test_cli_roa_on_a_toy2d_zubov_checkpoint(tmp_path, digits):
    from zubov_bench.checkpoint import save_checkpoint
    from zubov_bench.data import load_dataset
    from zubov_bench.models import create_model

    toy = load_dataset("toy2d")
    torch.manual_seed(0)
    save_checkpoint(tmp_path / "toy" / "model.pt", create_model("zubov", toy.spec, d=2, r=1.0))
    done = _cli("plot", "--roa", "--checkpoint", tmp_path / "toy" / "model.pt", "--out", tmp_path / "fig",
                "--resolution", 30, "--steps", 40, "--horizon", 4)
    assert done.exit_code == 0, done.output
    info = json.loads((tmp_path / "fig" / "roa-toy.json").read_text())
    assert len(info["iou"]) == 3 and 0.0 <= info["mean_iou"] <= 1.0 and info["resolution"] == [30, 30]
    assert _is_png(tmp_path / "fig" / "roa-toy.png") and (tmp_path / "fig" / "roa-toy.pdf").is_file()

    save_checkpoint(tmp_path / "digits.pt", create_model("zubov", digits.spec))
    wide = _cli("plot", "--roa", "--checkpoint", tmp_path / "digits.pt", "--out", tmp_path / "fig")
    assert wide.exit_code == 2 and "d = 2" in wide.output
    save_checkpoint(tmp_path / "node.pt", create_model("node", toy.spec, d=2))
    plain = _cli("plot", "--roa", "--checkpoint", tmp_path / "node.pt", "--out", tmp_path / "fig")
    assert plain.exit_code == 2 and "Lyapunov model" in plain.output


def test_only_keeps_the_named_columns_beside_clean_accuracy(results_dir):
    table, = _tables(results_dir, worst_case=True, only=("pgd", "worst-case"))
    assert [c.key[0] for c in table.columns] == ["clean", "pgd", "worst-case", "pgd", "worst-case", "pgd"]
    plain, = _tables(results_dir, only=("gaussian",))
    assert [c.label for c in plain.columns] == ["Clean", "0.1", "0.2"]
    bad = _cli("table", "--results", results_dir, "--only", "pgd,autoatack")
    assert bad.exit_code == 2 and "error: no records of autoatack; these results have: fgsm" in bad.output


def test_a_cell_that_failed_a_sanity_check_is_never_bold(tmp_path):
    records = synthetic_records() + [_record("node", 0, "fgsm", "l2", 1.0, 0.5)]
    folder = tmp_path / "r"
    folder.mkdir()
    (folder / "records.jsonl").write_text("\n".join(json.dumps(r.to_dict()) for r in records) + "\n")
    table, = _tables(folder)
    column = next(c for c in table.columns if c.key == ("fgsm", "l2", 1.0))
    flagged, clean = table.cell("zubov", column), table.cell("node", column)
    assert flagged.failed and flagged.mean > clean.mean  # 0.70 (masking?) against 0.50
    assert clean.best and not flagged.best
