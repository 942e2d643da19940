"""Gradient sources: autograd, and the batched URV estimator."""

from __future__ import annotations

import math
from typing import Optional

import pytest
import torch
from torch import nn

from foxcem.cem import AutogradGradient, CEMLoss, URVGradientEstimator
from foxcem.demo.digits import DigitsCNN


class _Quadratic:
    """F(x) = ‖x‖² per sample; accepts (…, N, d) and ``samples=``."""

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        return delta.pow(2).sum(dim=-1)


class _Smooth:
    """A smooth, curved per-sample function of d entries, with an exact gradient."""

    def __init__(
        self, n: int, d: int, curvature: float = 1.0, slope: float = 1.0, seed: int = 0
    ) -> None:
        g = torch.Generator().manual_seed(seed)
        self.a = slope * torch.randn(n, d, generator=g, dtype=torch.float64)
        self.b = curvature * torch.rand(n, d, generator=g, dtype=torch.float64)

    def _select(self, value: torch.Tensor, samples: Optional[torch.Tensor]) -> torch.Tensor:
        return value if samples is None else value[samples]

    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        a, b = self._select(self.a, samples), self._select(self.b, samples)
        return (a * torch.sin(delta) + 0.5 * b * delta**2).sum(dim=-1)

    def grad(self, delta: torch.Tensor) -> torch.Tensor:
        return self.a * torch.cos(delta) + self.b * delta


class _Counting(nn.Module):
    """Wraps a model, counting forward calls and rows."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(x.shape[0])
        return self.model(x)


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.cosine_similarity(a.flatten(1), b.flatten(1), dim=1)


def test_mean_estimate_of_norm_squared_at_reference_point() -> None:
    """F = ‖x‖² at (3, −2, 12.5): the mean of many estimates approaches (6, −4, 25)."""
    copies = 2000  # 2000 independent estimates in one batch, 100 directions each
    x = torch.tensor([3.0, -2.0, 12.5], dtype=torch.float64).expand(copies, 3).clone()
    estimator = URVGradientEstimator(_Quadratic(), num_directions=100, seed=0)
    mean = estimator(x).mean(dim=0)
    torch.testing.assert_close(
        mean, torch.tensor([6.0, -4.0, 25.0], dtype=torch.float64), atol=0.3, rtol=0
    )


def test_cosine_with_true_gradient_grows_with_q() -> None:
    n, d = 8, 784
    f = _Smooth(n, d)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    exact = f.grad(x)
    cosines = []
    for q in (10, 100, 1000):
        estimate = URVGradientEstimator(f, num_directions=q, seed=q)(x)
        cosines.append(float(_cosine(estimate, exact).mean()))
    assert cosines[0] < cosines[1] < cosines[2], cosines
    # for q ≪ d the cosine is about √(q/d): 0.11, 0.34, 0.75
    assert cosines[0] > 0.05 and cosines[2] > 0.6, cosines


def test_two_sided_has_lower_variance_at_equal_q() -> None:
    # Near a point of small gradient and large curvature the one-sided difference carries the
    # curvature term μ/2·uᵀHu; the symmetric difference cancels it.
    n, d, q = 4, 784, 50
    f = _Smooth(n, d, curvature=20.0, slope=0.05)
    x = 0.01 * torch.randn(n, d, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    spread = {}
    for two_sided in (False, True):
        estimator = URVGradientEstimator(f, num_directions=q, mu=0.05, two_sided=two_sided, seed=3)
        estimates = torch.stack([estimator(x) for _ in range(30)])
        spread[two_sided] = float(estimates.var(dim=0).sum())
    assert spread[True] < 0.5 * spread[False], spread


def test_estimate_formula_with_injected_directions() -> None:
    """ĝ = d/(μq) Σ (F(δ+μu) − F(δ)) u with the injected (then normalised) directions."""
    n, d, q, mu = 3, 5, 4, 0.01
    raw = torch.randn(n, q, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)

    def sampler(shape, *, generator, device, dtype):
        assert tuple(shape) == (n, q, d)
        return raw.clone()

    f = _Smooth(n, d)
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    u = raw / raw.norm(dim=-1, keepdim=True)
    for two_sided in (False, True):
        got = URVGradientEstimator(
            f, num_directions=q, mu=mu, two_sided=two_sided, sampler=sampler
        )(x)
        expected = torch.zeros_like(x)
        for i in range(n):  # literal per-sample, per-direction sum
            for j in range(q):
                plus = f((x[i] + mu * u[i, j])[None], samples=torch.tensor([i]))[0]
                if two_sided:
                    minus = f((x[i] - mu * u[i, j])[None], samples=torch.tensor([i]))[0]
                    diff = (plus - minus) / 2
                else:
                    diff = plus - f(x[i][None], samples=torch.tensor([i]))[0]
                expected[i] += d / (mu * q) * diff * u[i, j]
        torch.testing.assert_close(got, expected)


def test_mu_schedule() -> None:
    estimator = URVGradientEstimator(_Quadratic(), num_directions=2, seed=0)
    x = torch.zeros(1, 16)
    mus = []
    for _ in range(3):
        estimator(x)
        mus.append(estimator.current_mu(16))
    assert mus == pytest.approx([1 / math.sqrt(t) / 4 for t in (1, 2, 3)])
    assert URVGradientEstimator(_Quadratic(), mu=0.3, seed=0).current_mu(16) == 0.3


def _digits_loss(counting: _Counting, n: int = 5) -> tuple[CEMLoss, torch.Tensor]:
    x = torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return CEMLoss(counting, x, mode="PN", K=5.0), x


def _float64_cnn() -> nn.Module:
    torch.manual_seed(0)
    return DigitsCNN().double().eval()


@pytest.mark.parametrize("two_sided", [False, True])
def test_one_forward_pass_when_it_fits_and_chunks_give_the_same_estimate(two_sided: bool) -> None:
    counting = _Counting(_float64_cnn())
    loss, x = _digits_loss(counting)
    delta = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    q, n = 30, x.shape[0]
    rows = (2 * q if two_sided else q + 1) * n
    counting.calls.clear()
    one = URVGradientEstimator(
        loss, num_directions=q, two_sided=two_sided, batch_size=None, seed=7
    )(delta)
    assert counting.calls == [rows]  # every sample × direction (and F(δ)) in one forward pass
    for batch_size in (rows, 7, 64):
        counting.calls.clear()
        chunked = URVGradientEstimator(
            loss, num_directions=q, two_sided=two_sided, batch_size=batch_size, seed=7
        )(delta)
        assert len(counting.calls) == math.ceil(rows / batch_size)
        assert max(counting.calls) <= batch_size and sum(counting.calls) == rows
        torch.testing.assert_close(chunked, one, rtol=1e-9, atol=1e-9)


def test_seeded_estimates_are_reproducible_and_advance() -> None:
    loss, x = _digits_loss(_Counting(_float64_cnn()))
    a = URVGradientEstimator(loss, num_directions=10, generator=torch.Generator().manual_seed(5))
    b = URVGradientEstimator(loss, num_directions=10, generator=torch.Generator().manual_seed(5))
    first = a(torch.zeros_like(x))
    assert torch.equal(first, b(torch.zeros_like(x)))
    assert not torch.equal(first, a(torch.zeros_like(x)))  # fresh noise on the next call


def test_urv_batch_equals_samples_one_by_one_with_the_same_noise() -> None:
    """Per-sample noise drawn identically: the batch estimate equals the one-sample estimates."""
    model = _float64_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    q = 12

    def per_sample_sampler(ids):
        def sampler(shape, *, generator, device, dtype):
            return torch.stack(
                [
                    torch.randn(
                        (q, 1, 8, 8), generator=torch.Generator().manual_seed(100 + i), dtype=dtype
                    )
                    for i in ids
                ]
            )

        return sampler

    batch = URVGradientEstimator(
        CEMLoss(model, x, mode="PN"), num_directions=q, sampler=per_sample_sampler(range(4))
    )(torch.zeros_like(x))
    for i in range(4):
        single = URVGradientEstimator(
            CEMLoss(model, x[i : i + 1], mode="PN"),
            num_directions=q,
            sampler=per_sample_sampler([i]),
        )(torch.zeros_like(x[i : i + 1]))
        torch.testing.assert_close(single, batch[i : i + 1], rtol=1e-10, atol=1e-10)


def test_autograd_gradient_matches_finite_differences() -> None:
    model = _float64_cnn()
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = CEMLoss(model, x, mode="PN", K=100.0)  # hinge inactive: smooth in δ
    delta = 0.05 * torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=x.dtype)
    grad = AutogradGradient(loss)(delta)
    assert grad.shape == delta.shape and not grad.requires_grad
    h = 1e-6
    for index in [(0, 0, 3, 4), (1, 0, 0, 0), (2, 0, 7, 2)]:
        e = torch.zeros_like(delta)
        e[index] = h
        with torch.no_grad():
            fd = (loss(delta + e) - loss(delta - e)) / (2 * h)
        assert fd[index[0]] == pytest.approx(float(grad[index]), rel=1e-5, abs=1e-8)
        others = [k for k in range(3) if k != index[0]]
        assert torch.all(fd[others].abs() < 1e-8)  # samples are independent
    # the model's parameter gradients are untouched
    assert all(p.grad is None for p in model.parameters())


def test_urv_estimate_correlates_with_autograd_on_cnn() -> None:
    model = _float64_cnn()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    loss = CEMLoss(model, x, mode="PN", K=100.0)
    exact = AutogradGradient(loss)(torch.zeros_like(x))
    estimate = URVGradientEstimator(loss, num_directions=2000, mu=1e-4, seed=0)(torch.zeros_like(x))
    assert (_cosine(estimate, exact) > 0.7).all()


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_directions"):
        URVGradientEstimator(_Quadratic(), num_directions=0)
    with pytest.raises(ValueError, match="batch_size"):
        URVGradientEstimator(_Quadratic(), batch_size=0)
    with pytest.raises(ValueError, match="mu"):
        URVGradientEstimator(_Quadratic(), mu=-1.0)
    with pytest.raises(TypeError, match="generator"):
        URVGradientEstimator(_Quadratic(), generator=0)
    bad = URVGradientEstimator(
        _Quadratic(), num_directions=3, sampler=lambda s, **kw: torch.zeros(2)
    )
    with pytest.raises(ValueError, match="sampler"):
        bad(torch.zeros(1, 4))


def test_on_device_without_host_sync(device: str) -> None:
    torch.manual_seed(0)
    model = DigitsCNN().to(device).eval()
    x = torch.rand(6, 1, 8, 8, device=device)
    loss = CEMLoss(model, x, mode="PN")
    generator = torch.Generator(device=device).manual_seed(0)
    estimator = URVGradientEstimator(loss, num_directions=50, generator=generator, batch_size=128)
    delta = torch.zeros_like(x)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
    try:
        grad = estimator(delta)
        one_pass = URVGradientEstimator(loss, num_directions=50, generator=generator)(delta)
    finally:
        if device == "cuda":
            torch.cuda.set_sync_debug_mode("default")
    assert grad.device.type == device and one_pass.shape == x.shape
    assert torch.isfinite(grad).all()
    if device == "cuda":
        with pytest.raises(ValueError, match="generator"):
            URVGradientEstimator(loss, generator=torch.Generator().manual_seed(0))(delta)
