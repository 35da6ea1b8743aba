"""The MNIST-C-style corruptions (zubov_bench/perturbations/corruptions/): shapes and ranges on every
image size the datasets have, seeding per (seed, test index), severity ordering, bad severities,
the `corruptions` group in `eval` and its mean column in `table`."""
from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from zubov_bench.cli import main
from zubov_bench.errors import UserError
from zubov_bench.evaluation.plan import parse_attacks
from zubov_bench.perturbations import PERTURBATIONS
from zubov_bench.perturbations.registry import group_members

GROUP = "corruptions"
NAMES = group_members(GROUP)
SEVERITIES = (1, 2, 3, 4, 5)


def corrupt(name, x, severity, seed=0, index=None):
    generator = torch.Generator().manual_seed(seed)
    index = torch.arange(len(x)) if index is None else index
    return PERTURBATIONS.get(name)()(None, x, None, severity, generator, index)


def mnist_like(digits, n: int, size: int, channels: int) -> torch.Tensor:
    """Real digit images resized to `size` (and repeated to `channels`): strokes on a dark ground."""
    x = F.interpolate(digits.x_test[:n], size=(size, size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).repeat(1, channels, 1, 1)


def test_group_has_the_mnist_c_corruptions():
    assert len(NAMES) >= 12
    assert {"shot-noise", "impulse-noise", "glass-blur", "motion-blur", "shear", "scale", "rotate",
            "brightness", "translate", "stripe", "fog", "spatter", "dotted-line", "zigzag",
            "canny-edges"} <= set(NAMES)
    for name in NAMES:
        cls = PERTURBATIONS.get(name)
        assert cls.threat == "noise" and not cls.gradient_based
        assert len(cls.levels) == len(SEVERITIES) and cls.noise_grid == SEVERITIES
        assert "arXiv 1906.02337" in " ".join(cls.__doc__.split())  # the source of the definition


@pytest.mark.parametrize("size,channels", [(8, 1), (28, 1), (32, 3)])
def test_shape_dtype_and_range_on_every_dataset_size(digits, size, channels):
    x = mnist_like(digits, 3, size, channels)
    for name in NAMES:
        for severity in (1, 3, 5):
            out = corrupt(name, x, severity)
            assert out.shape == x.shape and out.dtype == x.dtype, name
            assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0, name
            assert torch.isfinite(out).all(), name


def test_float64_input_keeps_its_dtype(digits):
    x = digits.x_test[:2].double()
    assert corrupt("glass-blur", x, 2).dtype == torch.float64


def test_deterministic_per_seed_and_index_whatever_the_batch(digits):
    x = mnist_like(digits, 6, 28, 1)
    index = torch.arange(100, 106)
    for name in NAMES:
        whole = corrupt(name, x, 3, seed=7, index=index)
        again = corrupt(name, x, 3, seed=7, index=index)
        assert torch.equal(whole, again), name
        picked = torch.tensor([4, 1])  # other batch size, other order
        alone = corrupt(name, x[picked], 3, seed=7, index=index[picked])
        assert torch.equal(alone, whole[picked]), name


def test_the_seed_and_the_index_change_a_random_corruption(digits):
    x = mnist_like(digits, 1, 28, 1).repeat(2, 1, 1, 1)  # one image under two test indices
    for name in ("shot-noise", "impulse-noise", "fog", "spatter", "zigzag", "dotted-line", "glass-blur"):
        two = corrupt(name, x, 3, seed=0)
        assert not torch.equal(two[0], two[1]), name
        assert not torch.equal(corrupt(name, x, 3, seed=1), two), name


@pytest.mark.parametrize("size", [8, 28])
def test_severity_increases_the_distance_on_average(digits, size):
    """Mean L2 distance from the clean image over 40 real digits: strictly larger from severity 1 to
    3 to 5; no step down by more than 3% (fog's levels 3 and 4 have the same strength, and only
    their fractal differs)."""
    x = mnist_like(digits, 40, size, 1)
    for name in NAMES:
        dist = [float((corrupt(name, x, s) - x).flatten(1).norm(dim=1).mean()) for s in SEVERITIES]
        assert dist[0] < dist[2] < dist[4], (name, dist)
        assert all(b >= 0.97 * a for a, b in zip(dist, dist[1:])), (name, dist)
        assert dist[0] > 0, name


@pytest.mark.parametrize("severity", [0, 6, 2.5, -1])
def test_bad_severity_is_a_user_error(digits, severity):
    with pytest.raises(UserError, match="severity"):
        corrupt("rotate", digits.x_test[:2], severity)


def test_vector_inputs_are_refused():
    with pytest.raises(UserError, match="image"):
        corrupt("fog", torch.rand(4, 2), 1)


def test_all_leaves_the_group_out_and_the_group_name_runs_it():
    everything = {r.name for r in parse_attacks(["all"])}
    assert not everything & set(NAMES)
    grouped = parse_attacks([GROUP, "fgsm"])
    assert [r.name for r in grouped] == NAMES + ["fgsm"]
    assert not any(r.explicit for r in grouped[:-1])  # each keeps its own grid under --eps
    with pytest.raises(UserError, match="no parameters"):
        parse_attacks([f"{GROUP}:steps=2"])


def test_a_reproduce_preset_may_name_the_group():
    from zubov_bench.reproduce.evaluation import validate_groups
    from zubov_bench.reproduce.preset import parse_preset
    from zubov_bench.reproduce.readme import reductions, severities

    preset = parse_preset("mine", {"datasets": ["digits"], "models": ["node"], "eval": {"attacks": ["fgsm", GROUP]}})
    validate_groups(preset.eval)
    assert f"{len(NAMES)} perturbations" in severities(GROUP, None, {})
    not_run = next(line for line in reductions(preset, [], {}) if line.startswith("not run:"))
    assert "pgd" in not_run and GROUP not in not_run and not any(n in not_run.split(", ") for n in NAMES)


def test_list_shows_the_corruptions():
    result = CliRunner().invoke(main, ["list", "perturbations"])
    assert result.exit_code == 0
    assert sum(name in result.output for name in NAMES) == len(NAMES)


@pytest.fixture
def untrained_ckpt(digits, tmp_path):
    """An untrained NODE checkpoint: the plumbing test needs no accuracy, and training costs time."""
    from zubov_bench.checkpoint import save_checkpoint
    from zubov_bench.models import create_model

    torch.manual_seed(0)
    path = tmp_path / "node.pt"
    save_checkpoint(path, create_model("node", digits.spec).eval(), extra={"model": "node", "dataset": "digits", "seed": 0})
    return str(path)


def test_eval_corruptions_then_table_mean_column(untrained_ckpt, tmp_path):
    out = tmp_path / "res"
    result = CliRunner().invoke(main, ["eval", "-c", untrained_ckpt, "-a", GROUP, "--n-samples", "12",
                                       "--batch-size", "12", "--out", str(out)])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in (out / "records.jsonl").read_text().splitlines()]
    # the group's records only: the ones of fgsm (below, for reproduce's worst-case table) come later
    assert {(r["perturbation"], r["severity"]) for r in records} == {(n, float(s)) for n in NAMES for s in SEVERITIES}

    table = CliRunner().invoke(main, ["table", "--results", str(out), "--format", "csv"])
    assert table.exit_code == 0, table.output
    rows = [line.split(",") for line in table.output.splitlines()]
    header, body = rows[0], [dict(zip(rows[0], r)) for r in rows[1:]]
    assert {r["perturbation"] for r in body} == {"clean", GROUP}  # members collapse into the mean
    mean = next(r for r in body if r["perturbation"] == GROUP)
    expected = sum(r["robust_acc"] for r in records) / len(records)
    assert float(mean["mean"]) == pytest.approx(expected, abs=1e-5)  # csv keeps 6 digits
    assert "Corruptions (mean)" in CliRunner().invoke(main, ["table", "--results", str(out)]).output

    per_member = CliRunner().invoke(main, ["table", "--results", str(out), "--group", GROUP, "--format", "csv"])
    assert per_member.exit_code == 0, per_member.output
    member_rows = [dict(zip(header, line.split(","))) for line in per_member.output.splitlines()[1:]]
    shot = next(r for r in member_rows if r["perturbation"] == "shot-noise")
    shot_records = [r["robust_acc"] for r in records if r["perturbation"] == "shot-noise"]
    assert float(shot["mean"]) == pytest.approx(sum(shot_records) / len(shot_records), abs=1e-5)

    from zubov_bench.reproduce.outputs import write_tables  # reproduce's report phase writes the group table

    attack = CliRunner().invoke(main, ["eval", "-c", untrained_ckpt, "-a", "fgsm", "--eps", "0.1", "--n-samples",
                                       "12", "--grad-solver", "deployed", "--out", str(out)])
    assert attack.exit_code == 0, attack.output
    write_tables(out)
    assert "| Shot noise |" in (out / "tables" / "corruptions.md").read_text()
    assert "Corruptions (mean)" in (out / "tables" / "results.md").read_text()

    unknown = CliRunner().invoke(main, ["table", "--results", str(out), "--group", "nosuch"])
    assert unknown.exit_code != 0 and "nosuch" in unknown.output and "Traceback" not in unknown.output


def test_plot_group_writes_the_example_figure(tmp_path):
    result = CliRunner().invoke(main, ["plot", "--group", GROUP, "--dataset", "digits", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / f"{GROUP}-digits.png").stat().st_size > 10_000
    missing = CliRunner().invoke(main, ["plot", "--group", GROUP, "--out", str(tmp_path)])
    assert missing.exit_code != 0 and "--dataset" in missing.output


def test_a_fractional_severity_is_refused_before_any_record(untrained_ckpt, tmp_path):
    """Planning refuses 2.5 for a corruption (integer severities only), so nothing is written:
    a mix with a valid attack must not leave the valid one's records behind either."""
    out = tmp_path / "res"
    result = CliRunner().invoke(main, ["eval", "-c", untrained_ckpt, "-a", "gaussian", "-a", "rotate",
                                       "--eps", "2.5", "--n-samples", "4", "--out", str(out)])
    assert result.exit_code != 0
    assert "rotate: severity must be an integer" in result.output and "Traceback" not in result.output
    assert not (out / "records.jsonl").exists()
