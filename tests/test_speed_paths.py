"""The fast paths give the same answers: compiled steps, bfloat16 evaluation, automatic internal
batches that step down on out-of-memory, and a model-state guard without gradient copies."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients
from peak_memory import extra_peak_mib
from torch import nn

from foxcem import CEMExplainer, get_explainer
from foxcem.cem import AoExpGrad, CEMLoss, URVGradientEstimator, exp_grad_prox
from foxcem.core.seeding import counter_keys, counter_normal
from foxcem.demo.digits import DigitsSplit


def _prox_args() -> tuple:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(6, 1, 8, 8, generator=g)
    return (x, torch.randn(x.shape, generator=g), torch.rand(6, dtype=torch.float64) + 0.5,
            0.5, 0.5, torch.full((6,), 3.0, dtype=torch.float64), 1 / 64,
            torch.zeros_like(x), torch.ones_like(x), None)  # fmt: skip


@pytest.mark.slow
def test_compiled_step_and_draw_have_no_graph_break_and_equal_eager() -> None:
    args = _prox_args()
    explained = torch._dynamo.explain(exp_grad_prox)(*args)
    assert explained.graph_break_count == 0
    keys = counter_keys(torch.arange(16, dtype=torch.int32), 7)
    assert torch._dynamo.explain(counter_normal)(keys, 64).graph_break_count == 0
    a = torch.rand(4, 20, generator=torch.Generator().manual_seed(1))
    eager, compiled = torch.zeros_like(a), torch.zeros_like(a)
    opts = [AoExpGrad([d], l1=0.2, l2=0.3, lower=-2.0, upper=2.0, compile=c)
            for d, c in ((eager, False), (compiled, True))]  # fmt: skip
    for _ in range(15):
        for delta, opt in zip((eager, compiled), opts):
            delta.grad = delta - a
            opt.step()
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_compiled_urv_estimate_equals_eager(digits_model: nn.Module, digits_split: DigitsSplit):
    x = digits_split.x_test[:4]
    loss = CEMLoss(digits_model, x, mode="PN", K=100.0)
    delta = 0.05 * torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
    eager = URVGradientEstimator(loss, num_directions=30, seed=1)(delta)
    compiled = URVGradientEstimator(loss, num_directions=30, seed=1, compile=True)(delta)
    torch.testing.assert_close(compiled, eager, rtol=1e-3, atol=1e-3 * float(eager.abs().max()))


def test_bf16_evaluation_finds_the_same_explanations(
    digits_model: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:16]
    results = {}
    for precision in ("fp32", "bf16"):
        explainer = CEMExplainer()
        delta = explainer.calculate_features(digits_model, x, mode="PN", num_iter=100,
                                             c_steps=3, precision=precision)  # fmt: skip
        results[precision] = (explainer.meta_data["found"], delta.abs().sum())
    assert torch.equal(results["bf16"][0], results["fp32"][0])
    assert abs(float(results["bf16"][1] / results["fp32"][1]) - 1) < 0.25, results


class _Limited(nn.Module):
    """Runs out of (pretend) device memory on passes of more than ``limit`` rows."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Flatten(), nn.Linear(64, 16), nn.Tanh(), nn.Linear(16, 4))
        self.limit = limit
        self.rows: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.rows.append(x.shape[0])
        if x.shape[0] > self.limit:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.net(x)


def test_internal_batches_step_down_on_out_of_memory(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:6]
    model = _Limited(limit=20).eval()
    ours = get_explainer("integrated_gradients").calculate_features(model, x, 1, n_steps=16,
                                                                    internal_batch_size=None)  # fmt: skip
    assert max(model.rows[-3:]) <= 20  # the last passes fitted
    model.limit = 10**9
    theirs = IntegratedGradients(model).attribute(x, target=1, n_steps=16)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    model.limit, model.rows = 4, []
    shap = get_explainer("gradient_shap").calculate_features(model, x[:4], 1, n_samples=3)
    assert shap.shape == (4, 1, 8, 8) and max(model.rows[-2:]) <= 4  # one sample × 3 per pass


def test_auto_internal_batch_on_the_cpu_is_cache_sized(digits_split: DigitsSplit) -> None:
    model = _Limited(limit=10**9).eval()
    x = digits_split.x_test[:16]
    get_explainer("integrated_gradients").calculate_features(model, x, 0, n_steps=50)
    assert max(model.rows[1:]) == 256  # 800 rows in passes of 256 (64 values each)


@pytest.mark.slow
def test_model_state_guard_copies_no_gradients() -> None:
    setup = """
        import torch, foxcem
        from torch import nn
        torch.set_num_threads(1)
        model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8192), nn.ReLU(), nn.Linear(8192, 4096))
        model(torch.rand(2, 1, 8, 8)).sum().backward()  # 100 MiB of .grad
        x = torch.rand(2, 1, 8, 8)
        foxcem.get_explainer("saliency").calculate_features(model, x, 0)  # warm-up
        """
    call = 'foxcem.get_explainer("saliency").calculate_features(model, x, 0)'
    extra_mib = extra_peak_mib(setup, call)
    assert extra_mib < 40, extra_mib  # a copy of the gradients alone would be ~100 MiB
