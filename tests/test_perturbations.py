"""Perturbation registry, seeded noise and the attacks (CPU, small, real digits data)."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from zubov_bench.checkpoint import save_checkpoint
from zubov_bench.data import load_dataset
from zubov_bench.errors import UserError
from zubov_bench.models import create_model
from zubov_bench.perturbations import PERTURBATIONS, create_perturbation, list_perturbations
from zubov_bench.perturbations.base import KINDS, THREATS, lp_distance
from zubov_bench.perturbations.counter_rng import mix64

NOISES = ("gaussian", "uniform", "salt-pepper")
TOL = 1e-5


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@torch.no_grad()
def accuracy(model, x, y) -> float:
    return float((model(x).argmax(1) == y).float().mean())


@pytest.fixture(scope="module")
def batch(digits):
    return digits.x_test[:64], digits.y_test[:64], torch.arange(64)


@pytest.fixture(scope="module")
def node_checkpoint(trained_node, tmp_path_factory):
    path = tmp_path_factory.mktemp("transfer") / "node.pt"
    save_checkpoint(path, trained_node)
    return path


# --- registry and parameters ---------------------------------------------------------------
def test_registry_has_every_member_with_valid_metadata():
    expected = {"gaussian", "uniform", "salt-pepper", "fgsm", "pgd", "pgd-l2", "autoattack",
                "square", "transfer", "lyapunov"}
    assert expected <= set(PERTURBATIONS.names())
    for name, description in list_perturbations():
        cls = PERTURBATIONS.get(name)
        assert description and cls.name == name
        assert cls.threat in THREATS and cls.kind in KINDS


def test_params_are_typed_from_strings_and_json_able():
    p = create_perturbation("pgd", norm="L2", steps="10", step_size="none", random_start="false",
                            restarts="2")
    assert (p.params.norm, p.params.steps, p.params.step_size) == ("l2", 10, None)
    assert p.params.random_start is False and p.threat == "l2"
    json.dumps(p.settings())
    assert create_perturbation("pgd-l2").threat == "l2"
    assert create_perturbation("lyapunov", losses="ce").params.losses == ("ce",)


@pytest.mark.parametrize("name,params", [
    ("pgd", {"steps": 0}), ("pgd", {"norm": "l3"}), ("pgd", {"nope": 1}), ("pgd", {"steps": "1.5"}),
    ("pgd", {"random_start": "maybe"}), ("pgd", {"step_size": "-1"}), ("gaussian", {"sigma": 1}),
    ("autoattack", {"attacks": "apgd-ce"}), ("autoattack", {"version": "custom"}),
    ("autoattack", {"version": "custom", "attacks": "apgd-ce,pgd"}), ("square", {"n_queries": 0}),
    ("lyapunov", {"losses": "cw"}), ("no-such-attack", {}),
])
def test_bad_parameters_are_user_errors(name, params):
    with pytest.raises(UserError):
        create_perturbation(name, **params)


def test_bad_severity_is_a_user_error(batch, trained_node):
    x, y, idx = batch
    with pytest.raises(UserError):
        create_perturbation("salt-pepper")(trained_node, x, y, 1.5, gen(), idx)
    with pytest.raises(UserError):
        create_perturbation("pgd")(trained_node, x, y, -0.1, gen(), idx)


def test_default_grids_follow_the_dataset(digits):
    toy = load_dataset("toy2d").spec
    assert create_perturbation("pgd").default_severities(digits.spec) == digits.spec.eps_linf
    assert create_perturbation("pgd-l2").default_severities(toy) == toy.eps_l2
    assert create_perturbation("gaussian").default_severities(toy) == (0.05, 0.1, 0.2, 0.3)
    assert create_perturbation("uniform").default_severities(toy) == (0.1, 0.2, 0.3)
    assert create_perturbation("salt-pepper").default_severities(toy) == (0.05, 0.1, 0.2)


# --- seeded noise -------------------------------------------------------------------------------
def test_mix64_is_splitmix64_bit_for_bit():
    mask = (1 << 64) - 1

    def reference(z):
        z = (z + 0x9E3779B97F4A7C15) & mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    values = [0, 1, 12345678901234567, 2**63 - 1, -1, -(2**63)]
    out = mix64(torch.tensor(values))
    assert [int(o) & mask for o in out] == [reference(v & mask) for v in values]
    assert int(out[0]) & mask == 0xE220A8397B1DCDAF  # splitmix64's first output from state 0


@pytest.mark.parametrize("name", NOISES)
def test_noise_is_reproducible_and_independent_of_batching(name, batch):
    x, y, idx = batch
    noise = create_perturbation(name)
    full = noise(None, x, y, 0.2, gen(3), idx)
    assert torch.equal(full, noise(None, x, y, 0.2, gen(3), idx))
    parts = torch.cat([noise(None, x[a:b], y[a:b], 0.2, gen(3), idx[a:b]) for a, b in ((0, 5), (5, 64))])
    assert torch.equal(full, parts)
    perm = torch.randperm(64, generator=gen(1))
    assert torch.equal(full[perm], noise(None, x[perm], y[perm], 0.2, gen(3), idx[perm]))
    assert not torch.equal(full, noise(None, x, y, 0.2, gen(4), idx))
    assert not torch.equal(full, noise(None, x, y, 0.2, gen(3), idx + 1))


@pytest.mark.parametrize("name", NOISES)
def test_noise_stays_in_unit_range(name, batch):
    x, y, idx = batch
    extremes = torch.cat([x, torch.zeros_like(x[:8]), torch.ones_like(x[:8])])
    out = create_perturbation(name)(None, extremes, y[:len(extremes)], 0.3, gen(), None)
    assert out.shape == extremes.shape and out.dtype == extremes.dtype
    assert out.min() >= 0.0 and out.max() <= 1.0
    assert not torch.equal(out, extremes)


def test_noise_statistics_match_their_definition():
    x = torch.full((256, 1, 8, 8), 0.5)
    idx = torch.arange(256)
    g = create_perturbation("gaussian")(None, x, None, 0.1, gen(), idx) - 0.5
    assert abs(float(g.mean())) < 0.005 and abs(float(g.std()) - 0.1) < 0.005
    u = create_perturbation("uniform")(None, x, None, 0.2, gen(), idx) - 0.5
    assert float(u.abs().max()) <= 0.2 and abs(float(u.std()) - 0.2 / 3**0.5) < 0.005
    s = create_perturbation("salt-pepper")(None, x, None, 0.2, gen(), idx)
    hit = s != 0.5
    assert abs(float(hit.float().mean()) - 0.2) < 0.01
    assert abs(float((s[hit] == 1.0).float().mean()) - 0.5) < 0.05


# --- attacks -----------------------------------------------------------------------------------
ATTACK_CASES = [
    ("fgsm", {}, 0.1), ("pgd", {"steps": 10}, 0.1), ("pgd", {"steps": 10, "loss": "dlr"}, 0.1),
    ("pgd-l2", {"steps": 10}, 1.0), ("pgd-l2", {"steps": 10, "loss": "dlr", "restarts": 2}, 1.0),
    ("square", {"n_queries": 50}, 0.1), ("square", {"n_queries": 50, "norm": "l2"}, 1.0),
]


@pytest.mark.parametrize("name,params,eps", ATTACK_CASES)
def test_attack_respects_eps_range_and_robust_le_clean(name, params, eps, batch, trained_node):
    x, y, idx = (t[:32] for t in batch)
    atk = create_perturbation(name, **params)
    x_adv = atk(trained_node, x, y, eps, gen(), idx)
    assert x_adv.shape == x.shape and x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert float(lp_distance(x_adv, x, atk.threat).max()) <= eps + TOL
    clean, robust = accuracy(trained_node, x, y), accuracy(trained_node, x_adv, y)
    assert robust <= clean and robust < clean - 0.05  # and it does find adversarial examples


def test_misclassified_samples_are_left_alone(batch, trained_node):
    x, y, idx = batch
    wrong = (y + 1) % 10  # every label wrong: nothing to attack
    assert torch.equal(create_perturbation("pgd", steps=5)(trained_node, x, wrong, 0.1, gen(), idx), x)


def test_pgd_more_steps_is_not_weaker_and_restarts_only_help(batch, trained_node):
    x, y, _ = batch
    acc = {}
    for steps in (3, 20):
        x_adv = create_perturbation("pgd", steps=steps)(trained_node, x, y, 0.1, gen())
        acc[steps] = accuracy(trained_node, x_adv, y)
    assert acc[20] <= acc[3] + 2 / len(y)
    one = create_perturbation("pgd", steps=3)(trained_node, x, y, 0.1, gen())
    three = create_perturbation("pgd", steps=3, restarts=3)(trained_node, x, y, 0.1, gen())
    fooled_once = trained_node(one).argmax(1) != y
    fooled_thrice = trained_node(three).argmax(1) != y
    assert bool((fooled_thrice | ~fooled_once).all())  # same first restart; later ones only add


def test_pgd_linf_03_breaks_an_undefended_node(batch, trained_node):
    x, y, _ = batch
    x_adv = create_perturbation("pgd")(trained_node, x, y, 0.3, gen())
    assert accuracy(trained_node, x_adv, y) <= 0.05


def test_attacks_are_seeded_and_leave_global_rng_alone(batch, trained_node):
    x, y, idx = batch
    state = torch.get_rng_state()
    a = create_perturbation("pgd", steps=3)(trained_node, x, y, 0.1, gen(5), idx)
    b = create_perturbation("pgd", steps=3)(trained_node, x, y, 0.1, gen(5), idx)
    create_perturbation("square", n_queries=20)(trained_node, x, y, 0.1, gen(5), idx)
    assert torch.equal(a, b) and torch.equal(state, torch.get_rng_state())


def test_vector_inputs_work_for_pgd_and_square_refuses_them():
    toy = load_dataset("toy2d")
    torch.manual_seed(0)
    model = create_model("node", toy.spec).eval()
    x, y = toy.x_test[:32], model(toy.x_test[:32]).argmax(1).detach()  # all "correct"
    for norm, eps in (("linf", 0.05), ("l2", 0.1)):
        x_adv = create_perturbation("pgd", norm=norm, steps=5)(model, x, y, eps, gen())
        assert x_adv.shape == x.shape and float(lp_distance(x_adv, x, norm).max()) <= eps + TOL
    square = create_perturbation("square")
    assert not square.applies_to(model)
    with pytest.raises(UserError, match="image"):
        square(model, x, y, 0.05, gen())


def test_dlr_needs_three_classes():
    model = nn.Sequential(nn.Linear(2, 2)).eval()
    x = torch.rand(8, 2)
    with pytest.raises(UserError, match="3 classes"):
        create_perturbation("pgd", loss="dlr")(model, x, model(x).argmax(1), 0.1, gen())


# --- transfer ------------------------------------------------------------------------------------
def test_transfer_loads_its_source_lazily_and_needs_a_valid_one(tmp_path):
    # creating the attack loads nothing (reproduce validates it before the source is trained)
    attack = create_perturbation("transfer", source=str(tmp_path / "missing.pt"))
    assert attack.threat == "linf" and attack.needs_source
    with pytest.raises(UserError, match="not found"):
        attack.prepare()
    with pytest.raises(UserError, match="source"):
        create_perturbation("transfer").prepare()


def test_transfer_replays_source_examples_on_the_target(batch, trained_node, trained_zubov, node_checkpoint):
    x, y, idx = batch
    atk = create_perturbation("transfer", source=str(node_checkpoint), steps=10)
    assert atk.settings()["source_sha256"] and atk.kind == "transfer"
    for target in (trained_node, trained_zubov):
        x_adv = atk(target, x, y, 0.2, gen(), idx)
        assert float(lp_distance(x_adv, x, "linf").max()) <= 0.2 + TOL
        assert accuracy(target, x_adv, y) < accuracy(target, x, y)


def test_transfer_rejects_a_source_for_other_inputs(tmp_path):
    toy = load_dataset("toy2d")
    path = tmp_path / "toy.pt"
    save_checkpoint(path, create_model("node", toy.spec))
    digits = load_dataset("digits")
    target = create_model("node", digits.spec).eval()
    x = digits.x_test[:4]
    with pytest.raises(UserError, match="shape"):
        create_perturbation("transfer", source=str(path))(target, x, target(x).argmax(1), 0.1, gen())


# --- Lyapunov-aware adaptive attack ----------------------------------------------------------
def test_lyapunov_applies_only_to_lyapunov_models(batch, trained_node, trained_zubov):
    atk = create_perturbation("lyapunov")
    assert atk.applies_to(trained_zubov) and not atk.applies_to(trained_node)
    x, y, idx = batch
    with pytest.raises(UserError, match="Lyapunov"):
        atk(trained_node, x, y, 0.1, gen(), idx)


def test_lyapunov_attack_fools_zubov_within_eps(batch, trained_zubov):
    x, y, idx = batch
    atk = create_perturbation("lyapunov", steps=20)
    x_adv = atk(trained_zubov, x, y, 0.2, gen(), idx)
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert float(lp_distance(x_adv, x, "linf").max()) <= 0.2 + TOL
    assert accuracy(trained_zubov, x_adv, y) < accuracy(trained_zubov, x, y) - 0.1


def test_lyapunov_attack_sees_through_a_wrapper(batch, trained_zubov):
    class View(nn.Module):  # what a gradient view of the harness might look like
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x)

    atk = create_perturbation("lyapunov", steps=5, losses="ce")
    assert atk.applies_to(View(trained_zubov))
    x, y, idx = batch
    x_adv = atk(View(trained_zubov), x[:16], y[:16], 0.1, gen(), idx[:16])
    assert float(lp_distance(x_adv, x[:16], "linf").max()) <= 0.1 + TOL
