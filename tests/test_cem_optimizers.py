"""AdaExpGrad / AoExpGrad against a literal float64 per-sample reference of their documented update."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.optim.optimizer as optimizer_hooks

from foxcem.cem import AdaExpGrad, AoExpGrad, exp_grad_prox

scipy_special = pytest.importorskip("scipy.special")

N, D = 5, 6  # samples, entries per sample (shape (N, 2, 3))
SHAPE = (N, 2, 3)


# ----------------------------------------------------------------------------- the reference
def _ref_prox(x, G, alpha, l1, l2, s, beta, lo, hi):
    """The proximal map of exp_grad_prox's docstring, one entry at a time, scipy's lambertw(exp(u)) for ω."""
    out = np.empty_like(x)
    for i in range(x.size):
        z = np.sign(x[i]) * np.log(abs(x[i]) / beta + 1.0) - G[i] / alpha
        if l2 == 0.0:
            v = beta * np.exp(max(abs(z) - s * l1 / alpha, 0.0)) - beta
        else:
            a, b, c = beta, s * l2 / alpha, min(s * l1 / alpha - abs(z), 0.0)
            u = a * b - c + np.log(a * b)
            assert u < 700, "keep the reference in lambertw(exp(u))'s safe range"
            v = scipy_special.lambertw(np.exp(u)).real / b - a
        out[i] = min(max(np.sign(z) * v, lo[i]), hi[i])
    return out


def _ref_ada(grad, x0, lo, hi, eta, l1, l2, steps):
    """Literal AdaExpGrad, one sample: yields (x, y) after every step."""
    d = x0.size
    beta = 1.0 / d
    lam, x, y = 1.0, x0.copy(), x0.copy()
    for t in range(1, steps + 1):
        g = grad(x)
        lam += np.max(np.abs(g)) ** 2
        alpha = eta * np.sqrt(lam)
        x = _ref_prox(x, g, alpha, l1, l2, 1.0, beta, lo, hi)
        y = x / t + (1.0 - 1.0 / t) * y
        yield x, y


def _ref_ao(grad, x0, lo, hi, eta, l1, l2, steps):
    """Literal AoExpGrad, one sample: yields (x, y) after every step."""
    d = x0.size
    beta = 1.0 / d
    lam, B, h, x, y = 0.0, 0.0, np.zeros_like(x0), x0.copy(), x0.copy()
    for t in range(1, steps + 1):
        B += t
        g = grad(y)
        lam += (t * np.max(np.abs(g - h))) ** 2
        alpha = eta * np.sqrt(lam) / np.sqrt(np.log(d + 1))
        if alpha == 0.0:
            alpha = 1e-6
        G = t * g - t * h + (t + 1) * g
        x = _ref_prox(x, G, alpha, l1, l2, t + 1.0, beta, lo, hi)
        y = (t / B) * x + ((B - t) / B) * y
        h = g
        yield x, y


# ----------------------------------------------------------------------------- the problem
def _problem(seed: int = 0):
    """Per-sample smooth functions with different gradients: w·(x − a) + b·cos(3x)."""
    rng = np.random.default_rng(seed)
    w = rng.uniform(0.5, 3.0, size=(N, D))
    a = rng.normal(0.0, 1.5, size=(N, D))
    b = rng.uniform(-1.0, 1.0, size=(N, D))
    lo = -rng.uniform(0.3, 2.0, size=(N, D))
    hi = rng.uniform(0.3, 2.0, size=(N, D))
    x0 = np.clip(rng.normal(0.0, 0.5, size=(N, D)), lo, hi)

    def grad_np(n):
        return lambda x: w[n] * (x - a[n]) + b[n] * np.cos(3.0 * x)

    def grad_torch(x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(N, D)
        g = torch.from_numpy(w) * (flat - torch.from_numpy(a)) + torch.from_numpy(b) * torch.cos(
            3.0 * flat
        )
        return g.reshape(SHAPE)

    return x0, lo, hi, grad_np, grad_torch


@pytest.mark.parametrize("l1, l2", [(0.3, 0.0), (0.3, 0.7), (0.0, 1.5)])
@pytest.mark.parametrize("name", ["ada", "ao"])
def test_step_by_step_against_literal_reference(name: str, l1: float, l2: float) -> None:
    steps, eta = 25, 0.8
    x0, lo, hi, grad_np, grad_torch = _problem()
    reference = _ref_ada if name == "ada" else _ref_ao
    expected = [
        list(reference(grad_np(n), x0[n], lo[n], hi[n], eta, l1, l2, steps)) for n in range(N)
    ]
    delta = torch.tensor(x0, dtype=torch.float64).reshape(SHAPE)
    cls = AdaExpGrad if name == "ada" else AoExpGrad
    opt = cls(
        [delta],
        eta=eta,
        l1=l1,
        l2=l2,
        lower=torch.tensor(lo).reshape(SHAPE),
        upper=torch.tensor(hi).reshape(SHAPE),
        zero_tol=0.0,  # the literal algorithm, without the exactly sparse output
    )
    for step in range(steps):
        delta.grad = grad_torch(delta)
        opt.step()
        x_ref = np.stack([expected[n][step][0] for n in range(N)]).reshape(SHAPE)
        y_ref = np.stack([expected[n][step][1] for n in range(N)]).reshape(SHAPE)
        # The parameter holds the next gradient point: x (AdaExpGrad) or y (AoExpGrad).
        held = x_ref if name == "ada" else y_ref
        np.testing.assert_allclose(delta.numpy(), held, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(opt.output(delta).numpy(), y_ref, rtol=1e-10, atol=1e-12)
    assert (opt.steps(delta) == steps).all()
    # the thresholding branch of the proximal map was exercised (x entries near zero)
    if l1 > 0:
        assert min(np.abs(e[k][0]).min() for e in expected for k in range(steps)) < 1e-12


@pytest.mark.parametrize("l2", [0.0, 0.5, 2.0])
@pytest.mark.parametrize("l1", [0.0, 0.4])
def test_aoexpgrad_closed_form_elastic_net(l1: float, l2: float) -> None:
    """F(x) = ½‖x − a‖² in a box: y → sign(a)·max(|a| − l1, 0)/(1 + l2)."""
    a = torch.tensor(
        [[2.0, -1.5, 0.3, -0.2, 5.0, 0.0], [-3.0, 0.1, 0.45, -0.35, 1.0, -7.0]],
        dtype=torch.float64,
    )
    delta = torch.zeros_like(a)
    opt = AoExpGrad([delta], eta=1.0, l1=l1, l2=l2, lower=-10.0, upper=10.0)
    for _ in range(1500):
        delta.grad = delta - a
        opt.step()
    expected = torch.sign(a) * torch.clamp(a.abs() - l1, min=0.0) / (1.0 + l2)
    torch.testing.assert_close(opt.output(delta), expected, atol=1e-6, rtol=0)


def test_adaexpgrad_approaches_closed_form() -> None:
    a = torch.tensor([[2.0, -1.5, 0.3, -0.2]], dtype=torch.float64)
    delta = torch.zeros_like(a)
    opt = AdaExpGrad([delta], eta=1.0, l1=0.5, l2=0.5, lower=-10.0, upper=10.0)
    for _ in range(2000):
        delta.grad = delta - a
        opt.step()
    expected = torch.sign(a) * torch.clamp(a.abs() - 0.5, min=0.0) / 1.5
    torch.testing.assert_close(opt.output(delta), expected, atol=1e-2, rtol=0)
    torch.testing.assert_close(delta, expected, atol=1e-3, rtol=0)  # the last iterate


@pytest.mark.parametrize("cls", [AdaExpGrad, AoExpGrad])
def test_batch_equals_one_by_one(cls: type) -> None:
    x0, lo, hi, _, grad_torch = _problem(seed=3)
    x0_t = torch.tensor(x0, dtype=torch.float64).reshape(SHAPE)
    lo_t, hi_t = torch.tensor(lo).reshape(SHAPE), torch.tensor(hi).reshape(SHAPE)
    batch = x0_t.clone()
    opt = cls([batch], eta=1.0, l1=0.2, l2=0.3, lower=lo_t, upper=hi_t)
    for _ in range(30):
        batch.grad = grad_torch(batch)
        opt.step()
    for n in range(N):
        single = x0_t[n : n + 1].clone()
        opt_n = cls([single], eta=1.0, l1=0.2, l2=0.3, lower=lo_t[n : n + 1], upper=hi_t[n : n + 1])
        for _ in range(30):
            full = torch.zeros_like(batch)
            full[n] = single[0]
            single.grad = grad_torch(full)[n : n + 1]
            opt_n.step()
        torch.testing.assert_close(single, batch[n : n + 1], rtol=1e-13, atol=1e-14)
        torch.testing.assert_close(opt_n.output(single), opt.output(batch)[n : n + 1])


@pytest.mark.parametrize("cls", [AdaExpGrad, AoExpGrad])
def test_a_nan_or_inf_gradient_freezes_its_sample_only(cls: type) -> None:
    """Sample 1 meets a NaN and sample 3 an inf gradient at step 4: both stop where they were
    and are flagged; every other sample runs exactly as in a batch without them."""
    x0, lo, hi, _, grad_torch = _problem(seed=2)
    start = torch.tensor(x0, dtype=torch.float64).reshape(SHAPE)
    kwargs = dict(eta=1.0, l1=0.2, l2=0.3, lower=torch.tensor(lo).reshape(SHAPE),
                  upper=torch.tensor(hi).reshape(SHAPE))  # fmt: skip
    clean, poisoned = start.clone(), start.clone()
    opt_clean, opt = cls([clean], **kwargs), cls([poisoned], **kwargs)
    for step in range(10):
        clean.grad = grad_torch(clean)
        opt_clean.step()
        grad = grad_torch(poisoned)
        if step == 3:
            before = poisoned.clone()
            grad[1, 0, 1] = float("nan")
            grad[3, 1, 2] = float("inf")
        poisoned.grad = grad
        opt.step()
    assert opt.invalid(poisoned).tolist() == [False, True, False, True, False]
    assert opt.steps(poisoned).tolist() == [10, 3, 10, 3, 10]
    assert torch.isfinite(poisoned).all() and torch.isfinite(opt.output(poisoned)).all()
    for n in (1, 3):
        assert torch.equal(poisoned[n], before[n])
    for n in (0, 2, 4):
        assert torch.equal(poisoned[n], clean[n])
        assert torch.equal(opt.output(poisoned)[n], opt_clean.output(clean)[n])


@pytest.mark.parametrize("cls", [AdaExpGrad, AoExpGrad])
def test_inactive_samples_are_frozen(cls: type) -> None:
    x0, lo, hi, _, grad_torch = _problem(seed=1)
    delta = torch.tensor(x0, dtype=torch.float64).reshape(SHAPE)
    opt = cls([delta], eta=1.0, l1=0.2, l2=0.3)
    for _ in range(3):
        delta.grad = grad_torch(delta)
        opt.step()
    frozen_value, frozen_output = delta[1].clone(), opt.output(delta)[1]
    mask = torch.ones(N, dtype=torch.bool)
    mask[1] = False
    opt.set_active(mask)
    for _ in range(5):
        delta.grad = grad_torch(delta)
        opt.step()
    assert torch.equal(delta[1], frozen_value)
    assert torch.equal(opt.output(delta)[1], frozen_output)
    assert opt.steps(delta).tolist() == [8, 3, 8, 8, 8]
    with pytest.raises(ValueError, match="mask"):
        opt.set_active(torch.ones(N + 1, dtype=torch.bool))


def test_zero_gradient_shrinks_gradually_instead_of_jumping_to_zero() -> None:
    """λ = 0 (every gradient zero, as at a PP start whose margin exceeds κ): α = 0 would be an
    infinite step to the regulariser's minimum, throwing the start away. The floored α shrinks
    each entry by at most half a step (in the mirror map's log scale), so the start survives the
    first steps and the regulariser still wins in the end."""
    delta = torch.full((2, 4), 0.5, dtype=torch.float64)
    for l2 in (0.0, 0.5):
        d = delta.clone()
        opt = AoExpGrad([d], eta=1.0, l1=0.1, l2=l2, lower=0.0, upper=1.0, zero_tol=0.0)
        sizes = []
        for _ in range(40):
            d.grad = torch.zeros_like(d)
            opt.step()
            sizes.append(float(d.abs().max()))
        assert torch.isfinite(d).all()
        assert sizes[0] > 0.1  # not thrown away by the first step
        assert all(b <= a for a, b in zip(sizes, sizes[1:]))  # shrinking monotonically
        assert sizes[-1] < 0.01  # towards the regulariser's minimum


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_prox_never_overflows(dtype: torch.dtype) -> None:
    """Huge G/α drives ω's argument far beyond exp's range: the result is still finite."""
    x = torch.tensor([[0.5, -0.5, 0.0, 1.0]], dtype=dtype)
    G = torch.tensor([[-1e6, 1e6, -1e30, 1e3]], dtype=dtype)
    alpha = torch.tensor([1e-3], dtype=torch.float64)
    lo, hi = torch.full_like(x, -2.0), torch.full_like(x, 3.0)
    for l2 in (0.0, 0.5):
        out = exp_grad_prox(x, G, alpha, 0.1, l2, torch.tensor([1.0]), 0.25, lo, hi)
        assert torch.isfinite(out).all()
        torch.testing.assert_close(out[0, :3], torch.tensor([3.0, -2.0, 3.0], dtype=dtype))
    # unbounded, l2 > 0: ω grows linearly, so even this stays finite
    out = exp_grad_prox(x, G, alpha, 0.1, 0.5, torch.tensor([1.0]), 0.25)
    assert torch.isfinite(out).all()


def test_prox_soft_thresholds_to_exact_zero() -> None:
    # |z| below s·l1/α: the magnitude is exactly zero (the older AdaExpGrad went negative here)
    x = torch.tensor([[0.01, -0.01, 0.02]], dtype=torch.float64)
    out = exp_grad_prox(
        x, torch.zeros_like(x), torch.tensor([0.1]), 10.0, 0.0, torch.tensor([1.0]), 1 / 3
    )
    assert torch.equal(out, torch.zeros_like(x))


def test_bad_arguments() -> None:
    p = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="eta"):
        AoExpGrad([p], eta=0.0)
    with pytest.raises(ValueError, match="l1"):
        AdaExpGrad([p], l1=-1.0)
    with pytest.raises(ValueError, match="lower"):
        AoExpGrad([p], lower=torch.zeros(5))
    with pytest.raises(ValueError, match="lower"):
        AoExpGrad([p], lower=1.0, upper=0.0)


def test_float32_runs_and_beta_is_one_over_d(device: str) -> None:
    a = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)).to(device)
    delta = torch.zeros_like(a)
    opt = AoExpGrad([delta], eta=1.0, l1=0.1, l2=0.1, lower=-6.0, upper=6.0, zero_tol=0.0)
    for _ in range(200):
        delta.grad = delta - a
        opt.step()
    expected = torch.sign(a) * torch.clamp(a.abs() - 0.1, min=0.0) / 1.1
    assert opt.output(delta).dtype == torch.float32
    torch.testing.assert_close(opt.output(delta), expected, atol=2e-3, rtol=0)
    assert math.isclose(1.0 / delta[0].numel(), 1 / 64)


def test_step_hooks_and_the_profiler_label_survive_the_lighter_step_wrapper() -> None:
    # The optimizers replace torch.optim's step wrapper with a lighter one: every kind of step
    # hook still runs in order, a pre-hook may replace the arguments, and a profiler sees the
    # usual label.
    delta = torch.zeros(2, 3)
    opt = AoExpGrad([delta], l1=0.1, l2=0.1, lower=-1.0, upper=1.0)
    calls: list[str] = []
    opt.register_step_pre_hook(lambda o, a, k: calls.append("pre"))
    opt.register_step_post_hook(lambda o, a, k: calls.append("post"))
    handles = [
        optimizer_hooks.register_optimizer_step_pre_hook(
            lambda o, a, k: calls.append("global pre")
        ),
        optimizer_hooks.register_optimizer_step_post_hook(
            lambda o, a, k: calls.append("global post")
        ),
    ]
    try:
        delta.grad = torch.ones(2, 3)
        opt.step()
    finally:
        for handle in handles:
            handle.remove()
    assert calls == ["global pre", "pre", "post", "global post"]
    assert bool((delta < 0).all())  # the step itself ran
    closure_calls: list[int] = []
    opt.register_step_pre_hook(lambda o, a, k: ((o, lambda: closure_calls.append(1)), {}))
    opt.step()
    assert closure_calls == [1]  # the replaced arguments reached step()
    with torch.profiler.profile() as prof:
        opt.step()
    assert any(e.name == "Optimizer.step#AoExpGrad.step" for e in prof.events())
