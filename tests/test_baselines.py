"""Baselines: each one's defining property, plus the shared interface (stages, checkpoints)."""
from __future__ import annotations

import math
import tomllib
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import torchdiffeq

from zubov_bench.checkpoint import load_checkpoint, save_checkpoint
from zubov_bench.errors import UserError
from zubov_bench.models import MODELS, create_model, list_models
from zubov_bench.models.layers import pairwise_cosines
from zubov_bench.presets import resolve_preset

REPO = Path(__file__).resolve().parents[1]
# Every registered model (built-in, baselines through their entry points, installed plugins):
# a new baseline is tested here without being named
REGISTERED = MODELS.names()


def _batch(digits, n=32):
    return digits.x_train[:n], digits.y_train[:n]


# --- shared interface --------------------------------------------------------------------------
def test_every_baseline_module_registers_through_its_entry_point():
    """A file in baselines/ is a model only through its line in pyproject.toml; each line names one."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    declared = project["project"]["entry-points"]["zubov_bench.models"]
    modules = {f"baselines.{p.stem}" for p in (REPO / "baselines").glob("*.py") if p.stem != "__init__"}
    assert set(declared.values()) == modules
    for name, module in declared.items():
        assert name in REGISTERED and MODELS.get(name).__module__ == module


def test_every_model_is_listed_with_a_one_line_description():
    described = dict(list_models())
    assert {"node", "zubov", "tisode", "sodef", "lyanet", "stable", "fxts", "node-conv"} <= set(REGISTERED)
    for name in REGISTERED:
        assert described[name] and "\n" not in described[name]
    assert "reconstructed" in described["fxts"]


@pytest.mark.parametrize("name", REGISTERED)
def test_every_stage_trains_and_the_checkpoint_round_trips(name, digits, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, digits.spec, **resolve_preset(name, "digits")["model"])
    x, y = _batch(digits)
    for stage in model.training_stages():
        stage.setup()
        model.train()
        loss, terms = stage.loss(x, y)
        assert torch.isfinite(loss) and all(math.isfinite(v) for v in terms.values())
        params = [p for p in stage.params() if p.requires_grad]
        model.zero_grad(set_to_none=True)
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in params), stage.name
    model.eval()
    save_checkpoint(tmp_path / "m.pt", model, extra={"model": name})
    loaded, meta = load_checkpoint(tmp_path / "m.pt")
    assert loaded.config_dict() == model.config_dict()
    with torch.no_grad():
        torch.testing.assert_close(loaded(x[:8]), model(x[:8]))


# --- TisODE ------------------------------------------------------------------------------------
def _reference_steady_integral(model, z0, t1, t2, n=601):
    """int_{t1}^{t2} mean|f(z(t))| dt on a tight dopri5 trajectory, by the trapezoid rule."""
    times = torch.linspace(0.0, t2, n * round(t2 / (t2 - t1)))
    times = times.to(torch.float64)
    with torch.no_grad():
        zs = torchdiffeq.odeint(model.odefunc.field, z0, times, rtol=1e-9, atol=1e-9)
        inside = times >= t1 - 1e-12
        integrand = torch.stack([model.odefunc.field(None, z).abs().mean() for z in zs[inside]])
    return torch.trapezoid(integrand, times[inside])


def test_tisode_penalty_equals_a_numerical_integral_of_abs_f(digits):
    torch.manual_seed(0)
    model = create_model("tisode", digits.spec, ss_step=0.001).double()
    with torch.no_grad():
        for p in model.odefunc.parameters():
            p.mul_(3.0)  # a field that moves the state visibly over [0.9, 1.5]
        z0 = model.features(digits.x_train[:16].double())
        _, penalty = model.rollout(z0, with_penalty=True)
    reference = _reference_steady_integral(model, z0, 0.9, 1.5)
    assert reference > 0.05
    assert penalty.item() == pytest.approx(reference.item(), rel=5e-3)


def test_tisode_released_step_and_deployed_solver_agree_with_training(digits):
    torch.manual_seed(0)
    model = create_model("tisode", digits.spec).double()
    z0 = model.features(digits.x_train[:16].double()).detach()
    with torch.no_grad():
        z_T, penalty = model.rollout(z0, with_penalty=True)
        coarse_ref = _reference_steady_integral(model, z0, 0.9, 1.5)
        torch.testing.assert_close(model.solve(z0), z_T)  # deployed Euler = the training trajectory
    assert penalty.item() == pytest.approx(coarse_ref.item(), rel=0.05)  # Euler step 0.05


def test_tisode_penalty_switches_on_after_epoch_5_and_noise_aug_is_default(digits):
    torch.manual_seed(0)
    model = create_model("tisode", digits.spec)
    assert model.config_dict()["noise_aug"] == 0.5
    x, y = _batch(digits)
    model.set_epoch(4)
    loss, terms = model.training_loss(x, y)
    assert terms["steady"] == 0.0 and loss.item() == pytest.approx(terms["cls"])
    model.set_epoch(5)
    loss, terms = model.training_loss(x, y)
    assert terms["steady"] > 0
    assert loss.item() == pytest.approx(terms["cls"] + 0.01 * terms["steady"], rel=1e-5)
    model.train()
    assert not torch.equal(model.augment(x), x)
    model.eval()
    assert torch.equal(model.augment(x), x)


def test_tisode_rejects_times_off_the_euler_grid(digits):
    with pytest.raises(UserError, match="multiple of ss_step"):
        create_model("tisode", digits.spec, ss_t1=0.93)


# --- SODEF -------------------------------------------------------------------------------------
def _slow_jacobian(field, z):
    """J[i, j] = d f_i / d z_j at one point, one autograd call per output coordinate."""
    z = z.detach().requires_grad_(True)
    out = field(None, z)
    rows = [torch.autograd.grad(out[i], z, retain_graph=True)[0] for i in range(len(out))]
    return torch.stack(rows)


def test_sodef_regularisers_match_a_dense_jacobian_computed_the_slow_way(digits):
    torch.manual_seed(0)
    model = create_model("sodef", digits.spec).double()
    z = torch.randn(5, model.cfg.d, dtype=torch.float64)
    reg_diag, reg_off = model.jacobian_regularisers(z)
    diag_terms, off_terms = [], []
    for point in z:
        jac = _slow_jacobian(model.odefunc.field, point)
        d = len(jac)
        for i in range(d):
            off = sum(abs(jac[j, i]) for j in range(d) if j != i)
            diag_terms.append(torch.exp(jac[i, i] + 1.0))
            off_terms.append(torch.exp(0.1 * (off - abs(jac[i, i]) + 1.0)))
    assert reg_diag.item() == pytest.approx(torch.stack(diag_terms).mean().item(), rel=1e-10)
    assert reg_off.item() == pytest.approx(torch.stack(off_terms).mean().item(), rel=1e-10)
    with torch.no_grad():
        expected_f = (50.0 * model.odefunc.field(None, z)).pow(2).mean()
    assert model.equilibrium_regulariser(z).item() == pytest.approx(expected_f.item(), rel=1e-12)


def test_sodef_field_is_minus_sin_of_an_affine_map(digits):
    model = create_model("sodef", digits.spec)
    z = torch.randn(4, 64)
    lin = model.odefunc.field.linear
    torch.testing.assert_close(model.odefunc.field(None, z), -torch.sin(lin(z)))


def test_sodef_head_is_a_fixed_regular_simplex(digits):
    model = create_model("sodef", digits.spec)
    head = model.simplex_head
    k = digits.spec.num_classes
    assert head.shape == (k, 64)
    torch.testing.assert_close(head.norm(dim=1), torch.ones(k))
    cos = pairwise_cosines(head)
    torch.testing.assert_close(cos, torch.full_like(cos, -1 / (k - 1)))
    assert all(p is not head for p in model.parameters())  # a buffer: never trained


def test_sodef_recipe_has_three_stages_on_disjoint_parameters_and_deploys_dopri5(digits):
    model = create_model("sodef", digits.spec)
    stages = model.training_stages()
    assert [s.name for s in stages] == ["features", "ode", "head"]
    groups = [{id(p) for p in s.params()} for s in stages]
    assert all(groups) and not (groups[0] & groups[1] or groups[1] & groups[2] or groups[0] & groups[2])
    assert model.solver.method == "dopri5" and model.solver.T == 5.0
    x = digits.x_train[:8]
    with torch.no_grad():
        before = model(x)
        stages[2].setup()  # a fresh trainable head replaces the simplex read-out
        after = model(x)
    assert bool(model.head_trained) and not torch.allclose(before, after)


# --- LyaNet and FxTS ---------------------------------------------------------------------------
def _ce_and_grad(h, y):
    v = F.cross_entropy(h.flatten(0, 1), y[:, None].expand(h.shape[:-1]).flatten(), reduction="none")
    grad = torch.softmax(h, -1) - F.one_hot(y, h.shape[-1])[:, None, :].to(h.dtype)
    return v.reshape(h.shape[:-1]), grad


def _decay_field(y, rate):
    """A field with V_dot = -rate(V) exactly, for V = CE(h, y): f = -rate(V) grad V / |grad V|^2."""

    def field(h):
        v, grad = _ce_and_grad(h, y)
        return -rate(v)[..., None] * grad / grad.pow(2).sum(-1, keepdim=True)

    return field


def _states(digits, n=16, s=32, radius=10.0):
    from baselines.lyanet import sample_ball

    torch.manual_seed(1)
    return sample_ball(n, s, digits.spec.num_classes, radius).double(), digits.y_train[:n]


def test_lyanet_hinge_is_zero_for_a_field_that_satisfies_the_decay_condition(digits):
    model = create_model("lyanet", digits.spec)
    kappa = model.cfg.kappa
    h, y = _states(digits)
    ok = model.decay_violation(h, y, _decay_field(y, lambda v: (kappa + 0.5) * v))
    assert ok.shape == h.shape[:-1] and ok.abs().max().item() == 0.0
    too_slow = model.decay_violation(h, y, _decay_field(y, lambda v: (kappa - 0.5) * v))
    assert (too_slow > 0).all()


def test_lyanet_state_sampling_laws_differ_near_the_origin(digits):
    """"ball" (uniform volume) leaves the start h(0) = 0 unsampled in K = 10 dimensions; "radius"
    (the released sampler) puts a fixed share of the states near it. Both stay inside the ball."""
    from baselines.lyanet import sample_ball

    torch.manual_seed(0)
    k = digits.spec.num_classes
    ball, radial = (sample_ball(64, 64, k, 10.0, law=law).norm(dim=-1) for law in ("ball", "radius"))
    assert ball.max() <= 10.0 and radial.max() <= 10.0
    assert (ball < 5.0).float().mean() < 0.01  # (1/2)^10 of the volume
    assert abs((radial < 5.0).float().mean().item() - 0.5) < 0.05
    with pytest.raises(UserError, match="state_sampling"):
        create_model("lyanet", digits.spec, state_sampling="shell")


def test_fxts_hinge_is_zero_for_a_field_that_satisfies_the_fixed_time_condition(digits):
    model = create_model("fxts", digits.spec)
    c = model.cfg
    h, y = _states(digits)

    def rate(scale):
        return lambda v: scale * (c.fx_alpha * v.pow(c.fx_p) + c.fx_beta * v.pow(c.fx_q))

    assert model.decay_violation(h, y, _decay_field(y, rate(1.1))).abs().max().item() == 0.0
    assert (model.decay_violation(h, y, _decay_field(y, rate(0.9))) > 0).all()
    # the exponential LyaNet condition alone does not satisfy the fixed-time one everywhere
    lyanet_ok = _decay_field(y, lambda v: (c.kappa + 0.5) * v)
    assert (model.decay_violation(h, y, lyanet_ok) > 0).any()


def test_fxts_rejects_exponents_outside_p_lt_1_lt_q(digits):
    with pytest.raises(UserError, match="fx_p"):
        create_model("fxts", digits.spec, fx_p=1.2)


@pytest.mark.parametrize("name,form", [("lyanet", "additive"), ("lyanet", "simplex"), ("fxts", "simplex")])
def test_lyanet_trains_without_a_solve_starts_at_zero_and_drops_dropout_at_eval(name, form, digits):
    torch.manual_seed(0)
    model = create_model(name, digits.spec, field_form=form)
    x, y = _batch(digits)
    model.train()
    model.reset_nfe()
    model.training_loss(x, y)
    assert model.nfe == 0
    model.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(x))
        with model.using_solver("euler:1"):  # one step from h(0) = 0: h(T) = T f(0; x)
            feats = model.features(x)
            with model.field.conditioned(feats):
                f0 = model.field(None, torch.zeros(len(x), digits.spec.num_classes))
            torch.testing.assert_close(model(x), model.cfg.T * f0)
    model.train()
    with torch.no_grad(), model.field.conditioned(model.features(x)):
        h = torch.randn(len(x), digits.spec.num_classes)
        assert not torch.equal(model.field(None, h), model.field(None, h))  # dropout active


def test_lyanet_simplex_field_is_a_unit_direction_at_the_released_speed(digits):
    """The released ClassDyn law: |f| = gain log(sqrt(K) s) mean_k |v_k - h| softmax_k((v_k - h) . u),
    u the unit direction, whatever the scale of the network's raw output."""
    torch.manual_seed(0)
    k, s, gain = digits.spec.num_classes, 15.0, 2.0
    model = create_model("lyanet", digits.spec, field_form="simplex", vertex_scale=s, field_gain=gain).double().eval()
    x, _ = _batch(digits)
    x, h = x.double(), 10 * torch.randn(len(x), 7, k, dtype=torch.float64)
    with torch.no_grad(), model.field.conditioned(model.features(x)):
        f = model.field(None, h)
        model.field.out_map.weight.mul_(50.0)
        model.field.out_map.bias.mul_(50.0)
        torch.testing.assert_close(model.field(None, h), f)  # only the direction is learnt
    u = f / f.norm(dim=-1, keepdim=True)
    vertices = s * (2 * torch.eye(k, dtype=torch.float64) - 1)
    towards = vertices - h.unsqueeze(-2)
    weight = (towards.norm(dim=-1) * torch.softmax((towards * u.unsqueeze(-2)).sum(-1), -1)).mean(-1)
    torch.testing.assert_close(f.norm(dim=-1), gain * math.log(math.sqrt(k) * s) * weight)
    with pytest.raises(UserError, match="field_form"):
        create_model("lyanet", digits.spec, field_form="bilinear")


def test_a_lyanet_config_without_field_form_keeps_the_field_it_was_trained_with(digits):
    """Checkpoints written before `field_form` existed store no such key and hold the additive
    field's weights: the key's default must stay `additive` (or such configs must be given it on
    load) for them to load as trained. A recipe that sets `simplex` stores the key."""
    from baselines.lyanet import ConditionedField, SimplexDirectedField

    old = create_model("lyanet", digits.spec, state_radius=15.0, dropout=0.5)  # a pre-option config
    assert old.cfg.field_form == "additive" and isinstance(old.field, ConditionedField)
    model, meta = load_checkpoint(REPO / "results" / "quick" / "checkpoints" / "lyanet-digits-s0" / "model.pt")
    assert meta["config"]["field_form"] == "simplex" and isinstance(model.field, SimplexDirectedField)


# --- stable ------------------------------------------------------------------------------------
def _stable_model(digits, seed=0):
    torch.manual_seed(seed)
    model = create_model("stable", digits.spec).double().eval()
    with torch.no_grad():  # an aggressive nominal field, so the projection has work to do
        for p in model.odefunc.field.nominal.parameters():
            p.mul_(4.0)
    return model


def _random_states(model, n=400):
    eq = model.equilibria
    near = eq[torch.randint(len(eq), (n // 2,))] + 0.3 * torch.randn(n // 2, eq.shape[1], dtype=eq.dtype)
    far = 3.0 * torch.randn(n - n // 2, eq.shape[1], dtype=eq.dtype)
    return torch.cat([near, far])


def _v_dot(model, z, field):
    z = z.detach().requires_grad_(True)
    v = model.potential(z)
    (grad,) = torch.autograd.grad(v.sum(), z)
    return v.detach(), (grad * field).sum(-1)


def test_stable_field_decays_v_at_rate_alpha_at_random_points(digits):
    model = _stable_model(digits)
    alpha = model.cfg.alpha
    z = _random_states(model)
    with torch.no_grad():  # the evaluation path: grad V must still be computed inside the field
        f = model.vector_field(z)
    v, v_dot = _v_dot(model, z, f)
    assert (v_dot + alpha * v).max().item() <= 1e-5
    nominal = model.odefunc.field.nominal(None, z).detach()
    _, v_dot_nominal = _v_dot(model, z, nominal)
    assert (v_dot_nominal + alpha * v).max().item() > 0.1  # the projection is what enforces it


def test_stable_field_is_differentiable_for_training_and_attacks(digits):
    torch.manual_seed(0)
    model = create_model("stable", digits.spec)
    x = digits.x_train[:8].clone().requires_grad_(True)
    model(x).logsumexp(1).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert model.odefunc.field.nominal.net[0].weight.grad is not None
    assert model.lyap.W[0].grad is not None  # grad V inside the field is in the graph
    with torch.no_grad():
        assert model(digits.x_train[:8]).shape == (8, digits.spec.num_classes)
        assert model.initial_state_logits(digits.x_train[:8]).shape == (8, digits.spec.num_classes)


# --- node-conv ---------------------------------------------------------------------------------
def test_node_conv_state_is_a_64_channel_map_with_a_time_dependent_field(digits):
    torch.manual_seed(0)
    model = create_model("node-conv", digits.spec)
    with torch.no_grad():
        z0 = model.features(digits.x_train[:4])
        assert z0.shape == (4, 64, 4, 4)
        assert model.solve(z0).shape == z0.shape
        assert not torch.allclose(model.odefunc(0.0, z0), model.odefunc(1.0, z0))
