"""ExplanationGenerator: savepoints, meta data, hooks, early stop, best iterate, batch invariance."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from foxcem.cem import (
    AdaExpGrad,
    AoExpGrad,
    AutogradGradient,
    CEMLoss,
    ExplanationGenerator,
    URVGradientEstimator,
)
from foxcem.demo.digits import DigitsSplit


@pytest.fixture(scope="module")
def model64(digits_model: nn.Module) -> nn.Module:
    """The trained digits CNN in float64 (batch-size-independent arithmetic), frozen."""
    model = copy.deepcopy(digits_model).double().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _images(split: DigitsSplit, n: int, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return split.x_test[:n].to(dtype)


def _autograd_generator(mode: str = "PN", **kwargs) -> ExplanationGenerator:
    options = dict(
        loss=CEMLoss,
        optimizer=AoExpGrad,
        gradient=AutogradGradient,
        loss_kwargs={"mode": mode, "K": 5.0 if mode == "PN" else 2.0},
        optimizer_kwargs={"eta": 1.0, "l1": 0.5, "l2": 0.5},
        num_iter=40,
    )
    options.update(kwargs)
    return ExplanationGenerator(**options)


def test_savepoints_keys_and_start_value(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = _images(digits_split, 4)
    savepoints, meta = _autograd_generator("PP", num_iter=10, save_freq=4).run(
        image=x, inference_call=model64
    )
    assert list(savepoints) == ["1", "4", "8", "10"]
    assert torch.equal(savepoints["1"], x)  # PP starts at x
    assert all(v.shape == x.shape for v in savepoints.values())
    assert not torch.equal(savepoints["4"], savepoints["10"])
    only_last, _ = _autograd_generator("PN", num_iter=10).run(image=x, inference_call=model64)
    assert list(only_last) == ["10"]
    for key in ("loss_history", "attack_history", "l1_history", "l2_history"):
        assert meta[key].shape == (10, 4)
    assert meta["success_history"].dtype == torch.bool
    assert meta["success"].shape == (4,) and meta["iterations"].tolist() == [10] * 4
    # the recorded l1 of the last iteration is that of the returned explanation
    torch.testing.assert_close(meta["l1_history"][-1], savepoints["10"].abs().flatten(1).sum(1))


def test_meta_data_passes_through(model64: nn.Module, digits_split: DigitsSplit) -> None:
    _, meta = _autograd_generator(num_iter=2).run(
        image=_images(digits_split, 2), inference_call=model64, meta_data={"id": "abc"}
    )
    assert meta["id"] == "abc" and meta["num_iter"] == 2


@pytest.mark.parametrize("keep_best", [False, True])
@pytest.mark.parametrize("history", [True, False])
def test_final_meta_data_describes_the_returned_explanation(
    model64: nn.Module, digits_split: DigitsSplit, history: bool, keep_best: bool
) -> None:
    x = _images(digits_split, 4)
    savepoints, meta = _autograd_generator(num_iter=6, history=history, keep_best=keep_best).run(
        image=x, inference_call=model64
    )
    ev = CEMLoss(model64, x, mode="PN", K=5.0).evaluate(savepoints["6"])
    assert torch.equal(meta["loss"], ev.loss) and torch.equal(meta["attack"], ev.attack)
    assert torch.equal(meta["success"], ev.success)


def test_callback_progress_and_verbose(
    model64: nn.Module, digits_split: DigitsSplit, capsys: pytest.CaptureFixture[str]
) -> None:
    seen = []

    def callback(iteration: int, info: dict) -> bool:
        seen.append((iteration, info["loss"].shape, info["delta"].shape))
        return iteration == 7  # ask to stop

    x = _images(digits_split, 3)
    savepoints, meta = _autograd_generator(
        num_iter=20, callback=callback, progress=True, verbose=5
    ).run(image=x, inference_call=model64)
    assert [s[0] for s in seen] == list(range(1, 8))
    assert seen[0][1] == (3,) and seen[0][2] == x.shape
    assert list(savepoints) == ["7"] and meta["num_iter"] == 7
    assert "CEM iter 5/20" in capsys.readouterr().out


def test_early_stop_freezes_finished_samples(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = _images(digits_split, 8)
    gen = _autograd_generator(num_iter=400, early_stop=True)
    gen.early_stop_tol = 5e-3
    savepoints, meta = gen.run(image=x, inference_call=model64)
    assert meta["num_iter"] < 400  # everything froze before the end
    assert (meta["iterations"] <= meta["num_iter"]).all()
    assert (meta["attack"] <= -5.0 + 1e-6).all()  # frozen only once the hinge was saturated
    assert meta["success"].all()
    # a frozen sample keeps its value: its history is flat after it stopped
    k = int(meta["iterations"].argmin())
    stopped = int(meta["iterations"][k])
    hist = meta["l1_history"][stopped - 1 :, k]
    assert torch.all(hist == hist[0])


def test_keep_best_returns_the_sparsest_successful_iterate(
    model64: nn.Module, digits_split: DigitsSplit
) -> None:
    x = _images(digits_split, 8)
    plain, meta_plain = _autograd_generator("PP", num_iter=60).run(image=x, inference_call=model64)
    best, meta = _autograd_generator("PP", num_iter=60, keep_best=True).run(
        image=x, inference_call=model64
    )
    assert meta["best_found"].all()  # PP starts at x, which succeeds
    assert meta["success"].all()
    reg = lambda d: 0.5 * d.abs().flatten(1).sum(1) + 0.25 * d.pow(2).flatten(1).sum(1)  # noqa: E731
    last, kept = plain["60"], best["60"]
    # the kept one is the sparsest *feasible* iterate: successful with margin κ = 2
    ok = meta_plain["success"] & (meta_plain["attack"] <= -2.0)
    assert (reg(kept)[ok] <= reg(last)[ok] + 1e-12).all()


@pytest.mark.parametrize("optimizer", [AoExpGrad, AdaExpGrad])
@pytest.mark.parametrize("mode", ["PN", "PP"])
def test_batch_of_8_equals_one_by_one_autograd(
    model64: nn.Module, digits_split: DigitsSplit, mode: str, optimizer: type
) -> None:
    x = _images(digits_split, 8)
    gen = _autograd_generator(mode, optimizer=optimizer, num_iter=30)
    batch, _ = gen.run(image=x, inference_call=model64)
    for i in range(8):
        single, _ = gen.run(image=x[i : i + 1], inference_call=model64)
        torch.testing.assert_close(single["30"], batch["30"][i : i + 1], rtol=1e-9, atol=1e-10)


def _per_sample_sampler(ids: list[int], q: int):
    """Noise for call t and sample i drawn from its own generator, seeded by (t, i)."""
    calls = [0]

    def sampler(shape, *, generator, device, dtype):
        calls[0] += 1
        sample_shape = tuple(shape[2:])
        return torch.stack(
            [
                torch.randn(
                    (q,) + sample_shape,
                    generator=torch.Generator().manual_seed(1000 * calls[0] + i),
                    dtype=dtype,
                )
                for i in ids
            ]
        ).to(device)

    return sampler


@pytest.mark.parametrize("two_sided", [False, True])
def test_batch_of_8_equals_one_by_one_urv(
    model64: nn.Module, digits_split: DigitsSplit, two_sided: bool
) -> None:
    x, q = _images(digits_split, 8), 10

    def run(ids: list[int]) -> torch.Tensor:
        gen = ExplanationGenerator(
            loss=CEMLoss,
            optimizer=AoExpGrad,
            gradient=URVGradientEstimator,
            loss_kwargs={"mode": "PN", "K": 5.0},
            optimizer_kwargs={"l1": 0.5, "l2": 0.5},
            gradient_kwargs={
                "num_directions": q,
                "two_sided": two_sided,
                "sampler": _per_sample_sampler(ids, q),
            },
            num_iter=15,
            history=False,
        )
        savepoints, _ = gen.run(image=x[ids], inference_call=model64)
        return savepoints["15"]

    batch = run(list(range(8)))
    assert batch.abs().sum() > 0
    for i in range(8):
        torch.testing.assert_close(run([i]), batch[i : i + 1], rtol=1e-8, atol=1e-9)


def test_explicit_target_and_urv_defaults(model64: nn.Module, digits_split: DigitsSplit) -> None:
    x = _images(digits_split, 4)
    gen = ExplanationGenerator(
        loss_kwargs={"mode": "PP", "K": 2.0},
        gradient_kwargs={"num_directions": 8, "seed": 0},
        num_iter=5,
    )
    assert gen.gradient is URVGradientEstimator and gen.optimizer is AoExpGrad
    target = torch.tensor([1, 2, 3, 4])
    _, meta = gen.run(image=x, inference_call=model64, target=target)
    assert meta["loss"].shape == (4,)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="num_iter"):
        ExplanationGenerator(num_iter=0)
    with pytest.raises(ValueError, match="save_freq"):
        ExplanationGenerator(save_freq=0)
    with pytest.raises(TypeError, match="callback"):
        ExplanationGenerator(callback=3)
