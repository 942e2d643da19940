"""wright_omega against scipy's reference implementation, and its gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foxcem.cem import wright_omega

scipy_special = pytest.importorskip("scipy.special")


def _grid() -> np.ndarray:
    return np.concatenate(
        [
            np.linspace(-700.0, -50.0, 3001),
            np.linspace(-50.0, 50.0, 100001),
            np.logspace(np.log10(50.0), 6.0, 5001),
            [-709.0, -40.0, -20.0, -2.0, -1.0, 0.0, 1.0, 1e6],
        ]
    )


def test_matches_scipy_float64_over_minus700_to_1e6() -> None:
    u = _grid()
    expected = scipy_special.wrightomega(u)
    got = wright_omega(torch.tensor(u, dtype=torch.float64)).numpy()
    assert np.isfinite(got).all()
    rel = np.abs(got - expected) / expected
    assert rel.max() < 1e-6, f"max relative error {rel.max():.2e} at u = {u[rel.argmax()]}"
    assert rel.max() < 1e-12  # in fact to double precision


def test_float32_is_correctly_rounded() -> None:
    u32 = np.concatenate([np.linspace(-100.0, 100.0, 40001), np.logspace(2, 38, 2001)]).astype(
        np.float32
    )
    expected = scipy_special.wrightomega(u32.astype(np.float64))  # exact value at the float32 u
    got = wright_omega(torch.tensor(u32)).double().numpy()
    assert np.isfinite(got).all()
    normal = expected > np.finfo(np.float32).tiny
    rel = np.abs(got[normal] - expected[normal]) / expected[normal]
    assert rel.max() < 2.5 * np.finfo(np.float32).eps


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_everywhere_and_limits(dtype: torch.dtype) -> None:
    finfo = torch.finfo(dtype)
    u = torch.tensor(
        [finfo.min, -1e30, -800.0, -1e-30, 0.0, 1e-30, 800.0, 1e30, finfo.max], dtype=dtype
    )
    w = wright_omega(u)
    assert torch.isfinite(w).all()
    assert (w >= 0).all()
    assert w[0] == 0 and w[-1] == pytest.approx(float(finfo.max), rel=1e-6)
    assert float(w[4]) == pytest.approx(0.5671432904097838, rel=1e-7)  # Ω, W(1)
    special = wright_omega(torch.tensor([float("inf"), float("-inf"), float("nan")], dtype=dtype))
    assert special[0] == float("inf") and special[1] == 0 and torch.isnan(special[2])


def test_solves_defining_equation_for_huge_u() -> None:
    # The older code computed lambertw(exp(u)): exp overflows from u ≈ 709 on.
    u = torch.tensor([709.0, 710.0, 1e4, 1e8, 1e15], dtype=torch.float64)
    w = wright_omega(u)
    torch.testing.assert_close(w + torch.log(w), u, rtol=1e-14, atol=0)


def test_gradient_is_omega_over_one_plus_omega() -> None:
    u = torch.linspace(-60.0, 60.0, 2401, dtype=torch.float64, requires_grad=True)
    w = wright_omega(u)
    (grad,) = torch.autograd.grad(w.sum(), u)
    torch.testing.assert_close(grad, (w / (1 + w)).detach(), rtol=1e-14, atol=0)
    # finite differences, central, h = 1e-6
    h = 1e-6
    with torch.no_grad():
        fd = (wright_omega(u + h) - wright_omega(u - h)) / (2 * h)
    torch.testing.assert_close(grad, fd, rtol=1e-7, atol=1e-12)
    big = torch.tensor([-1e4, 1e6, 1e300], dtype=torch.float64, requires_grad=True)
    (g_big,) = torch.autograd.grad(wright_omega(big).sum(), big)
    assert torch.isfinite(g_big).all()


def test_gradcheck_and_second_derivative() -> None:
    u = torch.linspace(-8.0, 8.0, 33, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(wright_omega, (u,))
    assert torch.autograd.gradgradcheck(wright_omega, (u,))


def test_dtype_shape_device(device: str) -> None:
    u = torch.randn(3, 4, 5, device=device) * 50
    w = wright_omega(u)
    assert w.shape == u.shape and w.dtype == u.dtype and w.device == u.device
    expected = scipy_special.wrightomega(u.double().cpu().numpy())
    np.testing.assert_allclose(w.double().cpu().numpy(), expected, rtol=3e-7, atol=1e-37)
    half = wright_omega(u.to(torch.bfloat16))
    assert half.dtype == torch.bfloat16


def test_rejects_integer_input() -> None:
    with pytest.raises(TypeError, match="u"):
        wright_omega(torch.arange(3))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_finite_skips_only_the_infinity_branch(dtype: torch.dtype) -> None:
    u = torch.linspace(-800.0, 800.0, 4001, dtype=torch.float64).to(dtype)
    assert torch.equal(wright_omega(u, finite=True), wright_omega(u))
    for bad in ("False", 1, None):
        with pytest.raises(TypeError, match="finite"):
            wright_omega(u, finite=bad)  # type: ignore[arg-type]
