"""`zubov-bench certify`: randomized smoothing for any model, and the store records of both methods.

The deterministic Lyapunov certificate for Zubov-Net is in evaluation/lyapunov_certificate.py;
`certify_checkpoints` runs either and writes one record per radius (threat l2-certified).

Randomized smoothing (Cohen, Rosenfeld & Kolter, ICML 2019): a certified L2 radius per example.

The smoothed classifier is g(x) = argmax_c P(f(clip(x + sigma * eps)) = c), eps ~ N(0, I), where f is
the deployed model. `certify` follows CERTIFY of the paper: n0 noisy draws select the top class c_A,
n further draws give a one-sided Clopper-Pearson lower bound p_A of P(f = c_A) at level 1 - alpha; if
p_A > 1/2 the prediction c_A is certified on the L2 ball of radius sigma * Phi^-1(p_A), else the
smoothed classifier abstains. With probability at least 1 - alpha (per example, over the draws) a
certified prediction is g's prediction and the radius is sound for g -- not for f itself, so these
numbers are not bounded by the empirical robust accuracy of the deployed model.

Clipping to [0, 1] is part of the base classifier (f o clip is just another classifier, so the
certificate holds), and it matches the noise augmentation of training (`BenchModel.augment`).

Noise is a function of (seed, dataset index, phase, draw number) only: a CPU generator seeded from
the counter-based hash of (seed, index) draws fixed blocks of NOISE_BLOCK draws, so neither the batch
size nor the device changes an example's noise (counter_rng's splitmix normals are ~100x slower than
torch's generator, too slow for 10^5-10^6 draws per image).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import beta, norm

from ..errors import UserError
from ..models.modes import evaluation_mode
from ..models.ode import SolverError
from ..perturbations.counter_rng import mix64

NOISE_BLOCK = 1000  # draws per generator call: fixed, so the noise does not depend on the batch size
ABSTAIN = -1
SELECTION, ESTIMATION = 0, 1  # phases of CERTIFY: independent noise streams


@dataclass(frozen=True)
class SmoothingSettings:
    sigma: float
    n0: int = 100
    n: int = 1000
    alpha: float = 0.001

    def validate(self) -> "SmoothingSettings":
        if not (isinstance(self.sigma, (int, float)) and math.isfinite(self.sigma) and self.sigma > 0):
            raise UserError(f"--sigma must be a positive number, got {self.sigma!r}")
        for name, value in (("--n0", self.n0), ("--n", self.n)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"{name} must be an integer >= 1, got {value!r}")
        if not (isinstance(self.alpha, (int, float)) and 0 < self.alpha < 1):
            raise UserError(f"--alpha must be in (0, 1), got {self.alpha!r}")
        return self

    def params(self) -> dict:
        return {"sigma": float(self.sigma), "n0": self.n0, "n": self.n, "alpha": float(self.alpha)}


def noise_seed(seed: int, index: int, phase: int) -> int:
    """A 63-bit generator seed from (evaluation seed, dataset index, phase), via splitmix64."""
    key = mix64(mix64(torch.tensor(int(seed) * 2 + phase, dtype=torch.int64)) ^ int(index))
    return int(key) & ((1 << 63) - 1)


def example_noise(seed: int, index: int, phase: int, draws: int, shape: tuple[int, ...]) -> torch.Tensor:
    """Standard normal noise (draws, *shape) of one example, on CPU, a pure function of the arguments."""
    g = torch.Generator().manual_seed(noise_seed(seed, index, phase))
    blocks, left = [], draws
    while left > 0:
        blocks.append(torch.randn(NOISE_BLOCK, *shape, generator=g)[:left])
        left -= NOISE_BLOCK
    return torch.cat(blocks)


@torch.no_grad()
def sample_counts(model, x: torch.Tensor, index: torch.Tensor, sigma: float, draws: int, phase: int,
                  seed: int, num_classes: int, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Class counts (B, K) of f over `draws` noisy copies of each row, and the failed-draw counts (B,).

    A draw whose solve fails or gives non-finite logits votes for no class (so it lowers p_A).
    """
    shape = tuple(x.shape[1:])
    counts = np.zeros((len(x), num_classes), np.int64)
    failed = np.zeros(len(x), np.int64)
    owners, pending = [], []  # rows of noisy inputs not yet classified, with their example number

    def flush():
        inputs = torch.cat(pending).to(x.device, x.dtype)
        rows = np.concatenate(owners)
        pred = _predict(model, inputs)
        ok = pred >= 0
        np.add.at(counts, (rows[ok], pred[ok]), 1)
        np.add.at(failed, rows[~ok], 1)
        pending.clear()
        owners.clear()

    queued = 0
    for i in range(len(x)):
        noise = example_noise(seed, int(index[i]), phase, draws, shape)
        noisy = (x[i].cpu()[None] + sigma * noise).clamp(0.0, 1.0)
        for start in range(0, draws, batch_size):
            part = noisy[start:start + batch_size]
            take = min(len(part), batch_size - queued)
            pending.append(part[:take])
            owners.append(np.full(take, i))
            queued += take
            if queued == batch_size:
                flush()
                queued = 0
            if take < len(part):
                pending.append(part[take:])
                owners.append(np.full(len(part) - take, i))
                queued += len(part) - take
    if pending:
        flush()
    return counts, failed


def _predict(model, inputs: torch.Tensor) -> np.ndarray:
    """argmax of the model's logits, -1 where the solve failed or the logits are not finite."""
    try:
        logits = model(inputs)
    except SolverError:
        if len(inputs) == 1:
            return np.array([-1])
        half = len(inputs) // 2
        return np.concatenate([_predict(model, inputs[:half]), _predict(model, inputs[half:])])
    bad = ~torch.isfinite(logits).all(1)
    return torch.where(bad, -1, logits.argmax(1)).cpu().numpy()


def lower_confidence_bound(successes: np.ndarray, trials: int, alpha: float) -> np.ndarray:
    """One-sided Clopper-Pearson lower bound on a binomial proportion, at level 1 - alpha."""
    successes = np.asarray(successes)
    out = beta.ppf(alpha, np.maximum(successes, 1), trials - successes + 1)
    return np.where(successes > 0, out, 0.0)


def certify(model, x: torch.Tensor, y: torch.Tensor, index: torch.Tensor, settings: SmoothingSettings,
            seed: int = 0, batch_size: int = 1000) -> dict[str, np.ndarray]:
    """CERTIFY for each row: per-example prediction (ABSTAIN = -1), certified radius (0 when abstaining),
    the lower bound p_A, whether it is correct and certified, and the failed-draw count."""
    settings.validate()
    k = model.spec.num_classes
    with evaluation_mode(model):  # the deployed classifier is the one smoothed (no dropout draws)
        select, _ = sample_counts(model, x, index, settings.sigma, settings.n0, SELECTION, seed, k, batch_size)
        top = select.argmax(1)
        counts, failed = sample_counts(model, x, index, settings.sigma, settings.n, ESTIMATION, seed, k, batch_size)
    p_lower = lower_confidence_bound(counts[np.arange(len(x)), top], settings.n, settings.alpha)
    certified = p_lower > 0.5
    radius = np.where(certified, settings.sigma * norm.ppf(np.clip(p_lower, 0.5, 1.0)), 0.0)
    prediction = np.where(certified, top, ABSTAIN)
    return {"prediction": prediction.astype(np.int64), "radius": radius.astype(np.float64),
            "p_lower": p_lower.astype(np.float64),
            "correct": (prediction == y.cpu().numpy()) & certified, "failed_draws": failed}


def certified_at(outcome: dict[str, np.ndarray], radius: float) -> np.ndarray:
    """Per example: correct and certified at an L2 radius of at least `radius`."""
    return outcome["correct"] & (outcome["radius"] >= radius)


@torch.no_grad()
def smoothed_predict(model, x: torch.Tensor, index: torch.Tensor, sigma: float, n: int, alpha: float,
                     seed: int, batch_size: int = 1000) -> np.ndarray:
    """PREDICT of the paper: the smoothed prediction, or ABSTAIN when the top two classes are not
    separated by a two-sided binomial test at level alpha (used by the soundness checks)."""
    from scipy.stats import binomtest

    counts, _ = sample_counts(model, x, index, sigma, n, ESTIMATION, seed, model.spec.num_classes, batch_size)
    order = np.argsort(-counts, axis=1)
    out = np.full(len(x), ABSTAIN)
    for i in range(len(x)):
        a, b = counts[i, order[i, 0]], counts[i, order[i, 1]]
        if a + b > 0 and binomtest(int(a), int(a + b), 0.5).pvalue <= alpha:
            out[i] = order[i, 0]
    return out



# --- soundness check: attack the smoothed classifier inside each certified ball -------------------
def attack_smoothed(model, x: torch.Tensor, y: torch.Tensor, radius, sigma: float, steps: int = 40,
                    restarts: int = 3, noise_draws: int = 32, seed: int = 0) -> torch.Tensor:
    """L2 PGD with random restarts against the smoothed classifier, inside per-row balls of `radius`.

    The base model is not what smoothing certifies, so attacking it proves nothing; like SmoothAdv
    (Salman et al., NeurIPS 2019) we ascend the expected-softmax surrogate
    -log E_eps[softmax(f(x' + sigma eps))_y], estimated with `noise_draws` fresh draws per step.
    Returns, per row, the restart's point with the lowest surrogate probability of the true class.
    """
    g = torch.Generator(device="cpu").manual_seed(seed)
    radius = torch.as_tensor(radius, dtype=x.dtype).reshape(-1, *([1] * (x.dim() - 1))).to(x.device)
    step = 2.5 * radius / steps
    best, best_p = x.clone(), torch.full((len(x),), float("inf"), device=x.device)

    def true_probability(points):
        noise = torch.randn(noise_draws, *points.shape, generator=g).to(points.device, points.dtype)
        noisy = (points[None] + sigma * noise).clamp(0, 1).reshape(-1, *points.shape[1:])
        probs = torch.softmax(model(noisy), 1).reshape(noise_draws, len(points), -1).mean(0)
        return probs.gather(1, y[:, None]).squeeze(1)

    for _ in range(restarts):
        start = torch.randn(x.shape, generator=g).to(x.device, x.dtype)
        delta = _project_l2(start * radius * torch.rand(len(x), generator=g).to(x.device, x.dtype)
                            .reshape(radius.shape), radius)
        for _ in range(steps):
            delta.requires_grad_(True)
            loss = -torch.log(true_probability((x + delta).clamp(0, 1)).clamp_min(1e-12)).sum()
            grad, = torch.autograd.grad(loss, delta)
            norms = grad.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(radius.shape)
            delta = _project_l2(delta.detach() + step * grad / norms, radius)
            delta = (x + delta).clamp(0, 1) - x  # stay a valid image (still inside the ball)
        with torch.no_grad():
            p = true_probability(x + delta)
        better = p < best_p
        best[better], best_p[better] = (x + delta)[better].detach(), p[better]
    return best


def _project_l2(delta: torch.Tensor, radius: torch.Tensor) -> torch.Tensor:
    norms = delta.flatten(1).norm(dim=1).reshape(radius.shape).clamp_min(1e-12)
    return delta * torch.minimum(torch.ones_like(norms), radius / norms)


def fooled_certificates(model, x, y, index, certificate: dict[str, np.ndarray], settings: SmoothingSettings,
                        seed: int, n_predict: int = 1000, batch_size: int = 1000, **attack) -> np.ndarray:
    """Per row: certified correct at radius r, yet the smoothed prediction (PREDICT with a fresh seed)
    at the attack's point inside the L2 ball of radius r is another class. Abstaining is not fooled."""
    rows = np.flatnonzero(certificate["correct"] & (certificate["radius"] > 0))
    fooled = np.zeros(len(x), bool)
    if len(rows) == 0:
        return fooled
    sel = torch.from_numpy(rows).to(x.device)
    x_adv = attack_smoothed(model, x[sel], y[sel], certificate["radius"][rows], settings.sigma, seed=seed, **attack)
    distance = (x_adv - x[sel]).flatten(1).norm(dim=1).detach().cpu().numpy()
    assert np.all(distance <= certificate["radius"][rows] * (1 + 1e-5) + 1e-6), "the attack left its ball"
    pred = smoothed_predict(model, x_adv.detach(), index[rows.tolist()], settings.sigma, n_predict,
                            settings.alpha, seed + 1, batch_size)
    fooled[rows] = (pred != ABSTAIN) & (pred != y[sel].cpu().numpy())
    return fooled


def allowed_failures(n_certified: int, alpha: float, confidence: float = 0.999) -> int:
    """How many fooled certificates the alpha failure rates explain: each certificate and each PREDICT
    fails with probability <= alpha, so fooled ~ at most Binomial(n, 2 alpha); its `confidence` quantile."""
    from scipy.stats import binom

    return int(binom.ppf(confidence, n_certified, min(1.0, 2 * alpha)))


# --- certified records in the results store --------------------------------------------------------
CERTIFIED_THREAT = "l2-certified"  # not "l2": certified records are no member of the empirical worst case
EXAMPLES_PER_PART = 25  # resumable unit: a killed run redoes at most this many examples
DEFAULT_N_SAMPLES = 500
DEFAULT_BATCH_SIZE = 1000


def is_certified(threat: str) -> bool:
    return threat == CERTIFIED_THREAT


def certifies_deployed_model(record) -> bool:
    """Whether the certificate is about the deployed model (smoothing's is about the smoothed one)."""
    return is_certified(record.threat) and record.params.get("method") not in ("smoothing",)


def certified_above_empirical(records: list) -> list[tuple]:
    """(certificate, worst-case record) pairs where a certificate of the deployed model claims more
    than the empirical worst case at the same L2 epsilon on the same examples: an unsound certificate
    (or an attack evaluated on other examples). Smoothing certificates are exempt: they bound the
    smoothed classifier, whose robust accuracy may exceed the deployed model's."""
    from .worst_case import WORST_CASE

    def subset(r) -> tuple:
        return (r.checkpoint_sha256, r.dataset, r.params.get("n_samples", r.n), round(r.severity, 8))

    worst = {}
    for r in records:
        if r.perturbation == WORST_CASE and r.threat == "l2":
            worst.setdefault(subset(r), []).append(r)
    return [(c, w) for c in records if certifies_deployed_model(c) and c.severity > 0
            for w in worst.get(subset(c), []) if c.robust_acc > w.robust_acc]


def default_radii(spec) -> tuple[float, ...]:
    """Certified radii in raw pixel units (0: the smoothed classifier's accuracy, abstentions wrong)."""
    if spec.is_image and spec.channels == 1:
        return (0.0, 0.25, 0.5, 1.0)
    if spec.is_image:
        return (0.0, 0.25, 0.5, 0.75, 1.0)
    return (0.0, 0.1, 0.25, 0.5)


def smoothing_label(sigma: float) -> str:
    return f"smoothing σ={sigma:g}"


def parse_radii(text) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(float(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise UserError(f"--radii must be comma-separated numbers, got {text!r}") from None
    if not values or any(not math.isfinite(v) or v < 0 for v in values):
        raise UserError(f"--radii must be non-negative numbers, got {text!r}")
    return tuple(sorted(set(values)))


def median_certified_radius(outcome: dict[str, np.ndarray]) -> float:
    """Median over all examples of the certified radius of a correct prediction (0: wrong or abstained)."""
    return float(np.median(np.where(outcome["correct"], outcome["radius"], 0.0))) if len(outcome["radius"]) else 0.0


def certify_checkpoints(checkpoints, method: str = "smoothing", sigma: float = 0.25, n0: int = 100,
                        n: int = 1000, alpha: float = 0.001, n_samples: int = DEFAULT_N_SAMPLES,
                        batch_size: int = DEFAULT_BATCH_SIZE, seed: int = 0, radii=None, device: str = "auto",
                        out="results/eval", force: bool = False, data_root=None, download: bool = False,
                        progress: bool = True, log=print, flow_samples: int = 8, flow_steps: int = 10) -> list:
    """Certify checkpoints and store one record per (checkpoint, radius); returns those records.

    method smoothing: randomized smoothing of any model; lyapunov: the deterministic certificate of
    evaluation/lyapunov_certificate.py for models that classify by convex Lyapunov functions."""
    from ..checkpoint import load_checkpoint
    from ..device import deterministic_algorithms, resolve_device
    from .context import load_context
    from .lyapunov_certificate import require_certifiable
    from .runner import validate_sizes, resolve_checkpoints
    from .store import ResultsStore, check_writable_target

    paths = resolve_checkpoints(checkpoints)
    validate_sizes(n_samples, batch_size, seed)
    radii = parse_radii(radii)
    if method == "lyapunov":
        for path in paths:  # refuse before any work: the model's traits decide, not its name
            require_certifiable(load_checkpoint(path)[0], path)
        for name, value in (("--flow-samples", flow_samples), ("--flow-steps", flow_steps)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UserError(f"{name} must be an integer >= 0, got {value!r}")
        certifier = LyapunovCertifier(flow_samples, flow_steps, seed)
    elif method == "smoothing":
        certifier = SmoothingCertifier(SmoothingSettings(sigma, n0, n, alpha).validate(), seed, batch_size)
    else:
        raise UserError(f"unknown --method {method!r}; use smoothing or lyapunov")
    dev = resolve_device(device)
    check_writable_target(out)
    store = ResultsStore(out)
    store.tidy()
    ids = []
    with deterministic_algorithms(True, dev):
        for path in paths:
            ctx = load_context(path, n_samples, min(batch_size, 250), dev, data_root, download)
            ids += _certify_context(ctx, certifier, seed, radii or default_radii(ctx.model.spec), store, force,
                                    progress, log)
    by_id = {r.id: r for r in store.all_records()}
    return [by_id[i] for i in ids if i in by_id]


class SmoothingCertifier:
    """Randomized smoothing as a certify method: its record label and parameters, and one part's work."""

    def __init__(self, settings: SmoothingSettings, seed: int, batch_size: int):
        self.settings, self.seed, self.batch_size = settings, seed, batch_size

    def label(self, ctx) -> str:
        return smoothing_label(self.settings.sigma)

    def params(self, ctx) -> dict:
        return {**self.settings.params(), "method": "smoothing"}

    def __call__(self, ctx, rows) -> dict[str, np.ndarray]:
        dev_rows = torch.from_numpy(rows).to(ctx.device)
        return certify(ctx.model, ctx.x[dev_rows], ctx.y[dev_rows], ctx.index[rows], self.settings, self.seed,
                       self.batch_size)


class LyapunovCertifier:
    """The deterministic Lyapunov certificate as a certify method (evaluation/lyapunov_certificate.py)."""

    def __init__(self, flow_samples: int, flow_steps: int, seed: int):
        self.flow_samples, self.flow_steps, self.seed = flow_samples, flow_steps, seed
        self._facts, self._bounds = {}, {}

    def stem_bound(self, ctx):
        """The stem's Lipschitz bound, computed once per checkpoint (an exact conv norm can take a
        minute; every part of EXAMPLES_PER_PART examples shares it)."""
        from ..models.lipschitz import stem_lipschitz
        from .lyapunov_certificate import _float64_copy

        if ctx.path not in self._bounds:
            self._bounds[ctx.path] = stem_lipschitz(_float64_copy(ctx.model))
        return self._bounds[ctx.path]

    def facts(self, ctx) -> dict:
        from .lyapunov_certificate import model_facts

        if ctx.path not in self._facts:
            self._facts[ctx.path] = model_facts(ctx.model, self.stem_bound(ctx))
        return self._facts[ctx.path]

    def label(self, ctx) -> str:
        from .lyapunov_certificate import LYAPUNOV_LABEL

        return LYAPUNOV_LABEL

    def params(self, ctx) -> dict:
        return {"method": "lyapunov", "flow_samples": self.flow_samples, "flow_steps": self.flow_steps,
                **self.facts(ctx)}

    def __call__(self, ctx, rows) -> dict[str, np.ndarray]:
        from .lyapunov_certificate import lyapunov_certify

        dev_rows = torch.from_numpy(rows).to(ctx.device)
        return lyapunov_certify(ctx.model, ctx.x[dev_rows], ctx.y[dev_rows], self.flow_samples, self.flow_steps,
                                self.seed, lipschitz=self.stem_bound(ctx))


def _records_for(ctx, certifier, seed: int, radii) -> list:
    params = {**certifier.params(ctx), "n_samples": ctx.n}
    return [ctx.record(perturbation=certifier.label(ctx), threat=CERTIFIED_THREAT, severity=float(r),
                       seed=seed, grad_solver="none", params=params) for r in radii]


def _certify_context(ctx, certifier, seed, radii, store, force, progress, log) -> list[str]:
    import sys
    import time

    from tqdm import tqdm

    from .runner import refresh_record_checks
    from .store import concat_outcomes, record_from_outcomes

    records = _records_for(ctx, certifier, seed, radii)
    if not force and all(r.id in store.ids() for r in records):
        log(f"{ctx.path}: {records[0].perturbation} already certified in {store.root}; skipped "
            "(--force recomputes it)")
        return [r.id for r in records]
    partial_key = f"certify-{records[0].id}"  # every radius shares the per-example certificates
    if force:
        store.clear_batches(partial_key)
    done = store.load_batches(partial_key)
    parts = [np.arange(s, min(s + EXAMPLES_PER_PART, ctx.n)) for s in range(0, ctx.n, EXAMPLES_PER_PART)]
    for b, rows in enumerate(tqdm(parts, disable=not progress, desc="certify", leave=False, file=sys.stderr)):
        if b in done:
            continue
        start = time.perf_counter()
        arrays = certifier(ctx, rows)
        arrays.update(index=ctx.index[rows].numpy(), clean=ctx.clean[rows].numpy(),
                      failed=ctx.clean_failed[rows].numpy(), wall=np.array(time.perf_counter() - start))
        store.save_batch(partial_key, b, arrays)
        done[b] = arrays
    wall = sum(float(done[b]["wall"]) for b in range(len(parts)))
    outcome = concat_outcomes([{k: v for k, v in done[b].items() if k != "wall"} for b in range(len(parts))])
    for record in records:
        arrays = {**outcome, "robust": certified_at(outcome, record.severity)}
        store.put(record_from_outcomes(record, arrays, wall), arrays, replace=True)
    store.clear_batches(partial_key)
    refresh_record_checks(store, ctx.meta["sha256"], seed)  # e.g. certified <= empirical, as `eval` checks
    return [r.id for r in records]

