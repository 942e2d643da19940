"""The black box at real sizes: URV numerics at any d and dtype, memory bounded by the pass size,
no wasted model calls, segment space, and any inference callable."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from peak_memory import extra_peak_mib
from torch import nn

from foxcem import CEMExplainer, InferenceWrapper, get_explainer
from foxcem.cem import AoExpGrad, AutogradGradient, CEMLoss, ExplanationGenerator
from foxcem.cem import URVGradientEstimator as URV
from foxcem.demo.digits import DigitsSplit


class _Counting(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        return self.model(x)


def _big_cnn(dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 7, stride=4), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
        nn.Linear(128, 10),
    )  # fmt: skip
    return model.to(dtype).eval().requires_grad_(False)


def test_float32_estimate_matches_float64_at_imagenet_size() -> None:
    """Same directions (``sampler=``), d = 3×224×224: the float32 estimate with the μ it picks
    stays within 5% of the float64 estimate at that μ, early and late in the schedule."""
    n, q = 2, 16
    x = torch.rand(n, 3, 224, 224, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    raw = torch.randn((n, q, 3, 224, 224), generator=torch.Generator().manual_seed(1))

    def sampler(shape, *, generator, device, dtype):
        return raw.to(dtype)

    delta = 0.01 * torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype)
    loss32 = CEMLoss(_big_cnn(torch.float32), x.float(), mode="PN", K=100.0)
    loss64 = CEMLoss(_big_cnn(torch.float64), x, mode="PN", K=100.0)
    for t in (1, 100, 1000):
        est32 = URV(loss32, num_directions=q, sampler=sampler, two_sided=False)
        est32.t = t - 1
        g32 = est32(delta.float())
        est64 = URV(loss64, num_directions=q, sampler=sampler, mu=est32.last_mu, two_sided=False)
        g64 = est64(delta)
        deviation = float((g32.double() - g64).norm() / g64.norm())
        assert deviation <= 0.05, (t, est32.last_mu, deviation)


def test_bf16_autocast_keeps_the_cosine_to_the_true_gradient(digits_model: nn.Module,
                                                            digits_split: DigitsSplit) -> None:  # fmt: skip
    x = digits_split.x_test[:16]
    loss = CEMLoss(digits_model, x, mode="PN", K=100.0)  # hinge inactive: smooth in δ
    delta = 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    exact = AutogradGradient(loss)(delta)
    cosines = {}
    for name in ("float32", "bfloat16"):
        estimator = URV(loss, num_directions=400, seed=0)
        estimator.t = 999  # late in the schedule, where μ would otherwise be tiny
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=name == "bfloat16"):
            estimate = estimator(delta)
        cosines[name] = float(F.cosine_similarity(estimate.flatten(1), exact.flatten(1)).mean())
    assert cosines["bfloat16"] >= cosines["float32"] - 0.05, cosines


def test_estimate_is_bitwise_identical_for_any_pass_size(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:6]
    weight = torch.randn(64, 10, generator=torch.Generator().manual_seed(0))

    def rowwise(v: torch.Tensor) -> torch.Tensor:
        # Every row computed alone: batch-invariant (a batched matmul may pick another kernel,
        # and another summation order, for another number of rows).
        return torch.stack([torch.sin(row.flatten()) @ weight for row in v])

    loss = CEMLoss(rowwise, x, mode="PN", K=100.0)
    delta = torch.zeros_like(x)
    estimates = [URV(loss, num_directions=50, seed=3, batch_size=b)(delta) for b in (7, 64, None)]
    assert torch.equal(estimates[0], estimates[1]) and torch.equal(estimates[0], estimates[2])


@pytest.mark.slow
def test_peak_memory_is_bounded_by_the_pass_size() -> None:
    setup = """
        import torch
        from torch import nn
        from foxcem.cem import CEMLoss, URVGradientEstimator
        torch.set_num_threads(1)
        model = nn.Sequential(nn.AvgPool2d(16), nn.Flatten(), nn.Linear(3 * 14 * 14, 10)).eval()
        x = torch.rand(8, 3, 224, 224)
        loss = CEMLoss(model, x, mode="PN", K=5.0)
        delta = torch.zeros_like(x)
        URVGradientEstimator(loss, num_directions=2, batch_size=16, seed=0)(delta)  # warm-up
        """
    call = "URVGradientEstimator(loss, num_directions=100, batch_size=16, seed=0)(delta)"
    extra_mib = extra_peak_mib(setup, call)
    # all 8 × 100 directions at once would be 8·100·3·224·224·4 B ≈ 460 MiB
    assert extra_mib < 150, extra_mib


def test_auto_pass_size_follows_the_image_the_model_sees() -> None:
    # in segment space d is small (3 channels × 16 segments) but every row is a 224×224 image
    model = _Counting(_big_cnn(torch.float32))
    x = torch.rand(2, 3, 224, 224)
    loss = CEMLoss(model, x, mode="PN", K=5.0, segments="grid:4")
    source = URV(loss, num_directions=20, seed=0)
    assert source.batch_size == "auto"
    model.rows.clear()
    source(torch.zeros((2,) + loss.delta_shape))
    assert sum(model.rows) == 2 * 21 and max(model.rows) == 16, model.rows


def test_half_precision_parameters_keep_float32_state() -> None:
    a = torch.tensor([[2.0, -1.5, 0.3, -0.2, 1.0, 0.0]])
    results = {}
    for dtype in (torch.float32, torch.bfloat16):
        delta = torch.zeros_like(a, dtype=dtype)
        opt = AoExpGrad([delta], l1=0.4, l2=0.5, lower=-10.0, upper=10.0, zero_tol=0.0)
        for _ in range(600):
            delta.grad = (delta.float() - a).to(dtype)
            opt.step()
        assert opt.state[delta]["y"].dtype == torch.float32
        results[dtype] = opt.output(delta).float()
    expected = torch.sign(a) * torch.clamp(a.abs() - 0.4, min=0.0) / 1.5
    assert (results[torch.bfloat16] - expected).abs().max() < 0.02  # bf16 output rounding only
    assert (results[torch.float32] - expected).abs().max() < 1e-3


def test_no_extra_model_call_per_iteration(digits_model: nn.Module, digits_split: DigitsSplit):
    x = digits_split.x_test[:4]
    counting = _Counting(copy.deepcopy(digits_model))
    for gradient in (AutogradGradient, URV):
        counting.rows.clear()
        kwargs = {"num_directions": 10, "batch_size": None} if gradient is URV else {}
        gen = ExplanationGenerator(gradient=gradient, gradient_kwargs=kwargs, num_iter=20,
                                   history=True, keep_best=True)  # fmt: skip
        _, meta = gen.run(image=x, inference_call=counting)
        construct = 1  # the loss asks for the explained classes once
        calls = len(counting.rows) - construct
        # one call per iteration (gradient and the evaluation of its point), one for the last
        # iterate, one for the result: history and keep-best cost nothing more
        assert calls == 20 + 2, (gradient, calls)
        assert meta["loss_history"].shape == (20, 4)
        assert meta["model_calls"] == len(counting.rows)  # every call, the construction's too


def test_frozen_samples_leave_the_passes(digits_model: nn.Module, digits_split: DigitsSplit):
    x = digits_split.x_test[:8]
    counting = _Counting(copy.deepcopy(digits_model))
    gen = ExplanationGenerator(gradient=URV, gradient_kwargs={"num_directions": 10,
                               "batch_size": None, "seed": 0}, num_iter=300, early_stop=True,
                               early_stop_tol=5e-3, loss_kwargs={"K": 2.0, "c": 10.0})  # fmt: skip
    _, meta = gen.run(image=x, inference_call=counting)
    assert min(counting.rows[1:]) < max(counting.rows[1:])  # fewer rows once samples froze
    assert (meta["iterations"] < meta["num_iter"]).any()


def _numpy_mlp(digits_split: DigitsSplit):
    """A model one can only query: a NumPy MLP trained (in torch) on the digits."""
    torch.manual_seed(0)
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    opt = torch.optim.Adam(mlp.parameters(), lr=1e-2)
    for _ in range(200):
        opt.zero_grad()
        F.cross_entropy(mlp(digits_split.x_train), digits_split.y_train).backward()
        opt.step()
    w1, b1, w2, b2 = (p.detach().numpy().copy() for p in mlp.parameters())

    def forward(a: np.ndarray) -> np.ndarray:
        return np.maximum(a.reshape(len(a), -1) @ w1.T + b1, 0) @ w2.T + b2

    return forward


def test_numpy_model_through_inference_wrapper(digits_split: DigitsSplit) -> None:
    model = InferenceWrapper(_numpy_mlp(digits_split), numpy=True)
    x = digits_split.x_test[:8]
    before = model(x).argmax(dim=1)
    delta = CEMExplainer().calculate_features(model, x, mode="PN", gradient="urv",
                                              num_directions=30, num_iter=100, c_steps=3)  # fmt: skip
    assert (model(x + delta).argmax(dim=1) != before).float().mean() >= 0.75
    occlusion = get_explainer("occlusion").calculate_features(
        model, x, sliding_window_shapes=(1, 2, 2)
    )
    assert occlusion.shape == x.shape
    with pytest.raises(ValueError, match="needs gradients.*'occlusion'.*'cem' with gradient='urv'"):
        get_explainer("integrated_gradients").calculate_features(model, x)
    with pytest.raises(ValueError, match="gradient='urv'"):
        CEMExplainer().calculate_features(model, x, mode="PN", num_iter=2, c_steps=1)


def test_quantizer_maps_a_raw_output_to_class_scores(digits_split: DigitsSplit) -> None:
    forward = _numpy_mlp(digits_split)
    wrapped = InferenceWrapper(lambda a: {"logits": forward(a)}, numpy=True,
                               quantizer=lambda raw: raw["logits"])  # fmt: skip
    assert wrapped(digits_split.x_test[:3]).shape == (3, 10)
    with pytest.raises(ValueError, match="class scores"):
        InferenceWrapper(lambda a: forward(a)[:, 0], numpy=True)(digits_split.x_test[:3])


def test_segments_grid_and_labels(digits_model: nn.Module, digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:4]
    grid = CEMLoss(digits_model, x, mode="PN", segments="grid:4")
    assert grid.delta_shape == (1, 16) and grid.lower.shape == (4, 1, 16)
    labels = torch.arange(64).reshape(8, 8) // 8  # one segment per row
    rows = CEMLoss(digits_model, x, mode="PP", segments=labels)
    assert rows.delta_shape == (1, 8)
    theta = torch.zeros(4, 1, 8)
    theta[:, 0, 3] = 1.0  # keep row 3 only
    kept = rows.to_input_space(theta)
    torch.testing.assert_close(kept[:, :, 3], x[:, :, 3])
    assert (kept[:, :, :3] == 0).all() and (kept[:, :, 4:] == 0).all()
    for bad in ("grid:0", "grid:9", "tiles:3", torch.zeros(3, 8, 8, dtype=torch.long)):
        with pytest.raises(ValueError, match="segments"):
            CEMLoss(digits_model, x, segments=bad)


def test_slic_segments(digits_model: nn.Module, digits_split: DigitsSplit) -> None:
    pytest.importorskip("skimage")
    x = digits_split.x_test[:2]
    loss = CEMLoss(digits_model, x, mode="PN", segments="slic:8")
    assert loss.delta_shape[1] >= 2 and loss.segments.labels.shape == (2, 8, 8)
