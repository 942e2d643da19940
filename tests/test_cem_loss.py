"""CEMLoss: values against a direct computation, shapes, bounds, validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foxcem.cem import CEMLoss
from foxcem.cem.scores import ClassMargin

N = 6


def _model(seed: int = 0, classes: int = 4) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(2 * 3 * 3, 16), nn.Tanh(), nn.Linear(16, classes))


def _x(seed: int = 1) -> torch.Tensor:
    return torch.rand(N, 2, 3, 3, generator=torch.Generator().manual_seed(seed))


def _manual(model, inputs, t, mode, K, c, pn_target=None, smooth=False):
    scores = model(inputs)
    f_t = scores.gather(1, t[:, None])[:, 0]
    if pn_target is not None:
        other = scores.gather(1, pn_target[:, None])[:, 0]
    else:
        masked = scores.clone()
        masked[torch.arange(len(t)), t] = -float("inf")
        other = masked.max(dim=1).values
    a = other - f_t if mode == "PP" else f_t - other
    hinge = F.softplus(a + K) - K if smooth else torch.maximum(a, torch.tensor(-K))
    return c * hinge, a


@pytest.mark.parametrize("smooth", [False, True])
@pytest.mark.parametrize("mode", ["PP", "PN"])
def test_values_match_direct_computation(mode: str, smooth: bool) -> None:
    model, x = _model(), _x()
    c = torch.linspace(0.5, 3.0, N)
    loss = CEMLoss(model, x, mode=mode, c=c, K=0.3, smooth=smooth)
    delta = 0.3 * torch.randn(N, 2, 3, 3, generator=torch.Generator().manual_seed(2))
    t = model(x).argmax(1)
    # PP: the model sees the no-information value (default: the batch's minimum) plus δ
    inputs = x.min() + delta if mode == "PP" else x + delta
    expected, a = _manual(model, inputs, t, mode, 0.3, c, smooth=smooth)
    torch.testing.assert_close(loss(delta), expected)
    torch.testing.assert_close(loss.attack(delta), a)
    ev = loss.evaluate(delta)
    pred = model(inputs).argmax(1)
    assert torch.equal(ev.prediction, pred)
    assert torch.equal(ev.success, pred == t if mode == "PP" else pred != t)


def test_hinge_saturates_at_minus_kappa_and_smooth_tends_to_it() -> None:
    model, x = _model(), _x()
    for smooth in (False, True):
        loss = CEMLoss(model, x, mode="PP", K=2.0, smooth=smooth)
        value = loss(x * 1.0)  # PP at δ = x: the attack is −margin of each sample
        a = loss.attack(x)
        if not smooth:
            torch.testing.assert_close(value, torch.clamp(a, min=-2.0))
        else:
            assert (value > torch.clamp(a, min=-2.0)).all()  # softplus lies above the hinge
            assert (value - torch.clamp(a, min=-2.0) <= torch.log(torch.tensor(2.0)) + 1e-6).all()


def test_pn_target_and_explicit_target() -> None:
    model, x = _model(), _x()
    t = model(x).argmax(1)
    pn_target = (t + 1) % 4
    loss = CEMLoss(model, x, mode="PN", K=1.0, pn_target=pn_target)
    delta = 0.2 * torch.ones_like(x)
    expected, _ = _manual(model, x + delta, t, "PN", 1.0, 1.0, pn_target=pn_target)
    torch.testing.assert_close(loss(delta), expected)
    pred = model(x + delta).argmax(1)
    assert torch.equal(loss.success(delta), pred == pn_target)
    other = (t + 2) % 4
    explicit = CEMLoss(model, x, mode="PP", target=other.tolist())
    assert torch.equal(explicit.target, other)


def test_autoencoder_term() -> None:
    model, x = _model(), _x()
    ae = nn.Sequential(nn.Flatten(), nn.Linear(18, 18), nn.Unflatten(1, (2, 3, 3)))
    delta = 0.1 * torch.ones_like(x)
    for mode in ("PP", "PN"):
        plain = CEMLoss(model, x, mode=mode)
        with_ae = CEMLoss(model, x, mode=mode, gamma=0.7, AE=ae)
        v = x.min() + delta if mode == "PP" else x + delta
        extra = 0.7 * (v - ae(v)).pow(2).flatten(1).sum(1)
        torch.testing.assert_close(with_ae(delta), plain(delta) + extra)


def test_leading_dims_and_sample_subsets() -> None:
    model, x = _model(), _x()
    for mode in ("PP", "PN"):
        loss = CEMLoss(model, x, mode=mode, c=torch.arange(1.0, N + 1.0), K=5.0)
        deltas = 0.2 * torch.randn(3, N, 2, 3, 3, generator=torch.Generator().manual_seed(4))
        stacked = loss(deltas)
        assert stacked.shape == (3, N)
        for k in range(3):
            torch.testing.assert_close(stacked[k], loss(deltas[k]))
        idx = torch.tensor([4, 0, 4, 2])
        subset = loss(deltas[1, idx], samples=idx)
        torch.testing.assert_close(subset, stacked[1, idx])
        torch.testing.assert_close(loss(deltas[:, 1:3], samples=slice(1, 3)), stacked[:, 1:3])
    with pytest.raises(ValueError, match="delta"):
        loss(torch.zeros(N, 2, 3))
    with pytest.raises(ValueError, match="delta"):
        loss(torch.zeros(N - 1, 2, 3, 3))


def test_default_bounds_and_start() -> None:
    model = _model()
    x = _x() - 0.3  # some negative entries
    v = x.min()  # the no-information value: the feature range's lower end, the batch's minimum
    pp = CEMLoss(model, x, mode="PP")
    torch.testing.assert_close(pp.lower, torch.clamp(x - v, max=0))
    torch.testing.assert_close(pp.upper, torch.clamp(x - v, min=0))
    torch.testing.assert_close(pp.start(), x - v)
    pn = CEMLoss(model, x, mode="PN")
    # PN moves away from v (up) and stays inside the batch's range
    torch.testing.assert_close(pn.lower, torch.zeros_like(x))
    torch.testing.assert_close(x + pn.upper, x.max().expand_as(x))
    assert torch.equal(pn.start(), torch.zeros_like(x))
    # with the data's range given, a sample's bounds do not depend on the rest of the batch
    ranged = CEMLoss(model, x, mode="PN", feature_range=(-0.3, 0.7))
    alone = CEMLoss(model, x[2:3], mode="PN", feature_range=(-0.3, 0.7))
    torch.testing.assert_close(alone.upper, ranged.upper[2:3])
    torch.testing.assert_close(alone.lower, ranged.lower[2:3])
    # feature_range, per channel (both ways: no no-information value); add-only
    ranged = CEMLoss(
        model, x, mode="PN", feature_range=(torch.tensor([-1.0, 0.0]), 2.0), no_info_value=None
    )
    torch.testing.assert_close((x + ranged.lower)[:, 0], torch.full_like(x[:, 0], -1.0))
    torch.testing.assert_close((x + ranged.lower)[:, 1], torch.zeros_like(x[:, 1]))
    add = CEMLoss(model, x, mode="PN", add_only=True)
    assert (add.lower == 0).all() and (add.upper >= 0).all()
    # seeded noisy start, inside the bounds
    s1 = pn.start(noise_std=0.5, generator=torch.Generator().manual_seed(0))
    s2 = pn.start(noise_std=0.5, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2) and (s1 >= pn.lower).all() and (s1 <= pn.upper).all()
    assert s1.abs().sum() > 0


def test_user_bounds_scalar_and_tensor() -> None:
    model, x = _model(), _x()
    loss = CEMLoss(model, x, mode="PN", lower=-0.5, upper=torch.full((1, 2, 3, 3), 0.25))
    assert (loss.lower == -0.5).all() and loss.upper.shape == x.shape and (loss.upper == 0.25).all()


def test_channels_last_layout() -> None:
    base = _model()

    def nhwc_model(v: torch.Tensor) -> torch.Tensor:  # a model that expects (N, H, W, C)
        assert v.shape[-1] == 2
        return base(v.permute(0, 3, 1, 2))

    x = _x()
    x_last = x.permute(0, 2, 3, 1).contiguous()
    first = CEMLoss(base, x, mode="PN", feature_range=(torch.tensor([0.0, -1.0]), 1.0))
    last = CEMLoss(
        nhwc_model,
        x_last,
        mode="PN",
        channels_first=False,
        feature_range=(torch.tensor([0.0, -1.0]), 1.0),
    )
    torch.testing.assert_close(last.lower, first.lower.permute(0, 2, 3, 1))
    delta = 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(last(delta.permute(0, 2, 3, 1)), first(delta))


def test_validation_errors_name_the_argument() -> None:
    model, x = _model(), _x()
    with pytest.raises(ValueError, match="mode"):
        CEMLoss(model, x, mode="XX")
    with pytest.raises(ValueError, match="lower"):
        CEMLoss(model, x, lower=torch.zeros(N, 5))
    with pytest.raises(ValueError, match="upper"):
        CEMLoss(model, x, upper=torch.zeros(3, 2, 3, 3))
    with pytest.raises(ValueError, match="lower"):
        CEMLoss(model, x, lower=1.0, upper=0.0)
    t = model(x).argmax(1)
    with pytest.raises(ValueError, match="pn_target"):
        CEMLoss(model, x, mode="PN", pn_target=t)
    with pytest.raises(ValueError, match="pn_target"):
        CEMLoss(model, x, mode="PP", pn_target=(t + 1) % 4)
    with pytest.raises(ValueError, match="pn_target"):
        CEMLoss(model, x, mode="PN", pn_target=9)
    with pytest.raises(ValueError, match="model output"):
        CEMLoss(lambda v: model(v)[:, :, None], x)
    with pytest.raises(ValueError, match="model output"):
        CEMLoss(lambda v: model(v)[0], x)
    with pytest.raises(ValueError, match="AE"):
        CEMLoss(model, x, gamma=1.0)
    with pytest.raises(ValueError, match="`c`"):
        CEMLoss(model, x, c=torch.ones(N + 1))
    with pytest.raises(ValueError, match="K"):
        CEMLoss(model, x, K=-1.0)
    with pytest.raises(ValueError, match="feature_range"):
        CEMLoss(model, x, mode="PP", feature_range=(1.0, 0.0))
    with pytest.raises(ValueError, match="`x`"):
        CEMLoss(model, torch.zeros(5))
    with pytest.raises(TypeError, match="model"):
        CEMLoss("not a model", x)


def test_device(device: str) -> None:
    model, x = _model().to(device), _x().to(device)
    loss = CEMLoss(model, x, mode="PN", c=torch.ones(N, device=device))
    out = loss(torch.zeros(2, N, 2, 3, 3, device=device))
    assert out.shape == (2, N) and out.device.type == device


@pytest.mark.parametrize("mode", ["PN", "PP"])
def test_margin_gradient_is_the_one_hot_difference(mode: str) -> None:
    # The attack reads two scores; its gradient with respect to the scores is +1 at one class
    # and −1 at the other, whichever class the top other one is (checked row by row).
    generator = torch.Generator().manual_seed(4)
    scores = torch.randn(5, 7, generator=generator, dtype=torch.float64, requires_grad=True)
    target = torch.tensor([0, 3, 6, 2, 2])
    margin = ClassMargin(1.0 if mode == "PN" else -1.0)
    value = margin(scores, target, reuse=True)
    (grad,) = torch.autograd.grad(value.sum(), scores)
    sign = 1.0 if mode == "PN" else -1.0
    for n in range(5):
        others = [k for k in range(7) if k != int(target[n])]
        j = max(others, key=lambda k: float(scores[n, k]))
        assert float(value[n]) == sign * (float(scores[n, target[n]]) - float(scores[n, j]))
        expected = torch.zeros(7, dtype=torch.float64)
        expected[target[n]], expected[j] = sign, -sign
        assert torch.equal(grad[n], expected)
    # The kept target mask serves the next call of the same shape only.
    again = margin(scores.detach()[:, [1, 0, 2, 3, 4, 5, 6]], target, reuse=False)
    swapped = scores.detach()[:, [1, 0, 2, 3, 4, 5, 6]]
    for n in range(5):
        others = [k for k in range(7) if k != int(target[n])]
        top = max(float(swapped[n, k]) for k in others)
        assert float(again[n]) == sign * (float(swapped[n, target[n]]) - top)
    leading = margin(scores.detach().expand(3, 5, 7), target.expand(3, 5), reuse=True)
    assert torch.equal(leading, value.detach().expand(3, 5))
