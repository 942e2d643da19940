"""Hostile input on the surfaces added last: one test per class of defect. Every bad input is a
TypeError/ValueError naming the argument; no result is silently wrong; every module foxcem runs
— and the caller's input — ends as it started."""

from __future__ import annotations

import copy
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import foxcem
from foxcem import CEMExplainer, InferenceWrapper, get_explainer
from foxcem.cem import AoExpGrad, AutogradGradient, ExplanationGenerator, GradientSource
from foxcem.cem.loss import CEMLoss
from foxcem.demo.digits import DigitsSplit

pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")

FAST = {"num_iter": 20, "c_steps": 2, "progress": False}


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10)).eval()


def _predict(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(dim=1)


def _state(model: nn.Module) -> dict:
    return {
        "training": [m.training for m in model.modules()],
        "flags": [p.requires_grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
    }


def _same(model: nn.Module, before: dict) -> bool:
    after = _state(model)
    return (
        after["training"] == before["training"]
        and after["flags"] == before["flags"]
        and all(torch.equal(after["state"][k], v) for k, v in before["state"].items())
    )


# ---------------------------------------------------------------- silently wrong results


@pytest.mark.parametrize("keep_best", [True, False])
@pytest.mark.parametrize("c_steps", [1, 3])
def test_found_is_always_there_and_true_to_the_model(
    digits_model: nn.Module, digits_split: DigitsSplit, keep_best: bool, c_steps: int
) -> None:
    x = digits_split.x_test[:6]
    explainer = CEMExplainer()
    delta = explainer.calculate_features(
        digits_model, x, num_iter=30, c_steps=c_steps, keep_best=keep_best, progress=False
    )
    found = explainer.meta_data["found"]
    with torch.no_grad():
        scores = digits_model(x + delta)
    before = _predict(digits_model, x)
    top_other = scores.scatter(1, before[:, None], -math.inf).amax(dim=1)
    margin = top_other - scores.gather(1, before[:, None])[:, 0]
    assert torch.equal(found, margin >= 5.0 - 1e-4)  # flips with the margin κ = 5 of PN


def test_an_autoencoder_with_a_fixed_batch_is_refused(digits_split: DigitsSplit) -> None:
    class FixedBatchAE(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v[:1] * 0.9  # one row whatever the batch: broadcast against every sample

    with pytest.raises(ValueError, match="`AE`.*batch of"):
        CEMExplainer().calculate_features(
            _net(), digits_split.x_test[:4], gamma=1.0, AE=FixedBatchAE(), **FAST
        )

    class ShapeDependsOnBatch(nn.Module):
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return v if len(v) <= 2 else v[:, :, :4]  # fine on the probe, wrong later

    with pytest.raises(ValueError, match="`AE` must return a tensor shaped like its input"):
        CEMExplainer().calculate_features(
            _net(), digits_split.x_test[:4], gamma=1.0, AE=ShapeDependsOnBatch(), **FAST
        )


def test_conflicting_options_name_both(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:2]
    with pytest.raises(ValueError, match="`add_only=True` and `lower` conflict"):
        CEMExplainer().calculate_features(_net(), x, add_only=True, lower=-0.5, **FAST)
    # consistent values are fine
    delta = CEMExplainer().calculate_features(_net(), x, add_only=True, lower=0.0, **FAST)
    assert bool((delta >= 0).all())


BOOL_OPTIONS = ["add_only", "keep_best", "smooth", "history", "early_stop", "channels_first",
                "compile"]  # fmt: skip


@pytest.mark.parametrize("option", BOOL_OPTIONS)
@pytest.mark.parametrize("value", ["False", "True", 0, None, np.float64(1.0)])
def test_boolean_options_are_strict(digits_split: DigitsSplit, option: str, value) -> None:
    x = digits_split.x_test[:2]
    model = _net()
    before = _state(model)
    with pytest.raises(TypeError, match=f"`{option}` must be True or False"):
        CEMExplainer().calculate_features(model, x, **{option: value, **FAST})
    assert _same(model, before)


def test_boolean_options_are_strict_elsewhere(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="`numpy`"):
        InferenceWrapper(lambda a: a, numpy="False")
    with pytest.raises(TypeError, match="`return_convergence_delta`"):
        get_explainer("ig").calculate_features(
            _net(), torch.rand(2, 1, 8, 8), 0, return_convergence_delta="False"
        )
    with pytest.raises(TypeError, match="`numpy`"):
        InferenceWrapper(lambda a: a, numpy=np.array([True, False]))
    assert InferenceWrapper(lambda a: a, numpy=np.bool_(True)).numpy is True


def test_cli_options_parse_booleans_strictly(capsys: pytest.CaptureFixture) -> None:
    from foxcem.cli.options import parse_options

    assert parse_options(["keep_best=false", "add_only=True", "seed=none"]) == {
        "keep_best": False,
        "add_only": True,
        "seed": None,
    }
    assert parse_options(["keep_best=no"]) == {"keep_best": "no"}  # refused by the option
    with pytest.raises(TypeError, match="`keep_best` must be True or False, got 'no'"):
        CEMExplainer().calculate_features(_net(), torch.rand(1, 1, 8, 8), keep_best="no")


@pytest.mark.parametrize(
    "options, name",
    [
        ({"feature_range": (0.0, math.inf)}, "feature_range"),
        ({"feature_range": (-math.inf, 1.0)}, "feature_range"),
        ({"upper": math.inf}, "upper"),
        ({"lower": -math.inf}, "lower"),
        ({"upper": torch.tensor([math.nan])}, "upper"),
        ({"no_info_value": math.inf}, "no_info_value"),
    ],
)
def test_non_finite_bounds_are_refused(digits_split: DigitsSplit, options: dict, name: str):
    with pytest.raises(ValueError, match=f"`{name}` must be finite"):
        CEMExplainer().calculate_features(_net(), digits_split.x_test[:2], **options, **FAST)
    with pytest.raises(ValueError, match="`upper` must be finite"):
        AoExpGrad([torch.zeros(2, 3)], upper=math.inf)


def test_segment_labels_are_renumbered_densely(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:2]
    dense = torch.zeros(2, 8, 8, dtype=torch.long)
    dense[:, :, 4:] = 1
    options = {"gradient": "urv", "num_directions": 8, "num_iter": 10, "c_steps": 1}
    results = []
    for labels in (dense, dense * 5, dense * 10**7):  # gaps, and huge label values
        explainer = CEMExplainer()
        results.append(
            explainer.calculate_features(_net(), x, segments=labels, progress=False, **options)
        )
        assert explainer.meta_data["segment_values"].shape == (2, 1, 2)  # 2 segments, not 10**7
    assert torch.equal(results[0], results[1]) and torch.equal(results[0], results[2])


# ---------------------------------------------------------------- caller's state changed


def test_an_autoencoder_in_train_mode_is_left_alone(digits_split: DigitsSplit) -> None:
    autoencoder = nn.Sequential(nn.BatchNorm2d(1), nn.Conv2d(1, 1, 3, padding=1)).train()
    before = _state(autoencoder)
    CEMExplainer().calculate_features(
        _net(), digits_split.x_test[:4], gamma=1.0, AE=autoencoder, **FAST
    )
    assert _same(autoencoder, before) and autoencoder.training


def test_figures_run_models_under_the_guard(digits_split: DigitsSplit) -> None:
    pytest.importorskip("matplotlib")
    from foxcem.viz import plot_pp_pn, plot_savepoints

    model = nn.Sequential(
        nn.BatchNorm2d(1), nn.Flatten(), nn.Dropout(0.5), nn.Linear(64, 10)
    ).train()
    before = _state(model)
    rng = torch.get_rng_state()
    x = digits_split.x_test[:2]
    plot_pp_pn(x, pp=x * 0.5, pn=x * 0.1, model=model)
    plot_savepoints({"1": x * 0, "2": x * 0.1}, image=x[:1], model=model)
    assert _same(model, before) and model.training
    assert torch.equal(torch.get_rng_state(), rng)  # no Dropout draw from the global stream


def test_odd_figure_inputs_are_named(digits_split: DigitsSplit) -> None:
    pytest.importorskip("matplotlib")
    from foxcem.viz import plot_explanation_grid, plot_pp_pn, plot_savepoints

    x = digits_split.x_test[:2]
    with pytest.raises(ValueError, match="`images` must hold at least one image"):
        plot_pp_pn(x[:0], pp=x[:0])
    with pytest.raises(ValueError, match="`images` must have 1 .* or 3 .* channels"):
        plot_pp_pn(torch.rand(2, 2, 8, 8), pp=torch.rand(2, 2, 8, 8))
    with pytest.raises(ValueError, match="`pn` holds 1 images, the inputs 2"):
        plot_pp_pn(x, pp=x, pn=x[:1])
    with pytest.raises(ValueError, match="`found_pp` must hold one flag per image"):
        plot_pp_pn(x, pp=x, found_pp=[True])
    with pytest.raises(ValueError, match="`found"):
        plot_explanation_grid(x, pp={"CEM PP": x}, found={"CEM PP": [True]})
    with pytest.raises(ValueError, match="`index` 5 is out of range"):
        plot_savepoints({"1": x}, index=5)
    with pytest.raises(TypeError, match="`images` must be a tensor"):
        plot_pp_pn(None, pp=x)


# ---------------------------------------------------------------- model answers


class _Answers:
    """A NumPy 'model' returning a chosen answer."""

    def __init__(self, answer) -> None:
        self.answer = answer

    def __call__(self, array: np.ndarray):
        return self.answer(array) if callable(self.answer) else self.answer


@pytest.mark.parametrize(
    "answer, words",
    [
        (None, "got None"),
        ({"logits": np.zeros((2, 3))}, "dict .* quantizer="),
        ("cat", "got a str"),
        ([[0.1, 0.9], [0.3]], "not a rectangular array"),
        ([["a", "b"], ["c", "d"]], "not a rectangular array"),
        (lambda a: np.zeros(len(a)), r"\(class labels\?"),
        (lambda a: np.full((len(a), 3), np.nan), "NaN or inf"),
        (lambda a: np.zeros((len(a), 3), dtype=complex), "real"),
    ],
)
def test_inference_wrapper_names_what_came_back(answer, words: str) -> None:
    wrapped = InferenceWrapper(_Answers(answer), numpy=True)
    with pytest.raises(ValueError, match=words):
        wrapped(torch.rand(2, 1, 4, 4))


def test_inference_wrapper_accepts_arrays_lists_and_row_tensors() -> None:
    x = torch.rand(3, 4)
    scores = np.arange(6, dtype=np.float64).reshape(3, 2)
    for answer in (scores, scores.tolist(), [torch.tensor(r) for r in scores], scores.astype(int)):
        out = InferenceWrapper(_Answers(answer), numpy=True)(x)
        assert out.dtype == torch.float32 and torch.equal(out, torch.tensor(scores).float())
    quantizer = InferenceWrapper(
        _Answers({"mask": np.zeros((3, 2))}), quantizer=lambda raw: {"bad": 1}, numpy=True
    )
    with pytest.raises(ValueError, match="after `quantizer`.*dict"):
        quantizer(x)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_an_onnx_model_with_a_fixed_batch_explains_any_batch(
    digits_model: nn.Module, digits_split: DigitsSplit, tmp_path: Path
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "fixed.onnx"
    torch.onnx.export(digits_model, (digits_split.x_test[:1],), str(path), dynamo=False)
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    wrapped = InferenceWrapper(session)
    assert wrapped.fixed_batch == 1
    x = digits_split.x_test[:9]
    torch.testing.assert_close(wrapped(x), digits_model(x).detach(), rtol=1e-4, atol=1e-4)
    delta = CEMExplainer().calculate_features(
        wrapped, x, gradient="urv", num_iter=5, c_steps=1, num_directions=4, progress=False
    )
    assert delta.shape == x.shape
    occlusion = get_explainer("occlusion").calculate_features(wrapped, x)
    assert occlusion.shape == x.shape


# ---------------------------------------------------------------- raw errors made clear


def test_keep_best_false_with_the_c_search_works(digits_split: DigitsSplit) -> None:
    explainer = CEMExplainer()
    explainer.calculate_features(_net(), digits_split.x_test[:2], keep_best=False, **FAST)
    assert "found" in explainer.meta_data and explainer.meta_data["c"].shape == (2,)


def test_callback_answers_are_checked(digits_split: DigitsSplit) -> None:
    with pytest.raises(TypeError, match="`callback` must return None, True .*tensor of shape"):
        CEMExplainer().calculate_features(
            _net(), digits_split.x_test[:2], callback=lambda step, info: info["success"], **FAST
        )


def test_an_optimizer_that_needs_a_closure_is_refused_up_front() -> None:
    with pytest.raises(TypeError, match="`optimizer` LBFGS needs a closure"):
        ExplanationGenerator(optimizer=torch.optim.LBFGS)


@pytest.mark.parametrize("answer", [None, "shape"])
def test_a_custom_gradient_source_answer_is_checked(digits_split: DigitsSplit, answer) -> None:
    class Broken(GradientSource):
        def __call__(self, delta, samples=None):
            return None if answer is None else torch.zeros(3)

    generator = ExplanationGenerator(gradient=Broken, num_iter=3)
    with pytest.raises(ValueError, match="the gradient source Broken must return a tensor"):
        generator.run(image=digits_split.x_test[:2], inference_call=_net())


def test_optimizer_state_of_another_batch_is_refused() -> None:
    saved = AoExpGrad([torch.zeros(4, 3)])
    saved.param_groups[0]["params"][0].grad = torch.ones(4, 3)
    saved.step()
    other = AoExpGrad([torch.zeros(2, 3)])
    with pytest.raises(ValueError, match="another number of samples"):
        other.load_state_dict(saved.state_dict())


@pytest.mark.parametrize("seed, error", [(2**64, ValueError), (-1, ValueError), (1.0, TypeError)])
def test_seeds_out_of_range_are_named(digits_split: DigitsSplit, seed, error) -> None:
    with pytest.raises(error, match="`seed`"):
        CEMExplainer().calculate_features(_net(), digits_split.x_test[:1], seed=seed, **FAST)


@pytest.mark.parametrize("name", ["cem", "integrated_gradients", "occlusion"])
def test_non_finite_input_is_named(name: str) -> None:
    x = torch.rand(3, 1, 8, 8)
    x[1, 0, 2, 2] = math.nan
    with pytest.raises(ValueError, match="`input_data` must be finite; NaN or inf in sample"):
        get_explainer(name).calculate_features(_net(), x)


def test_a_target_without_values_is_named() -> None:
    with pytest.raises(ValueError, match="`pred_label_idx` is on the meta device"):
        get_explainer("saliency").calculate_features(
            _net(), torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long, device="meta")
        )


def test_model_calls_count_every_evaluation(digits_split: DigitsSplit) -> None:
    calls = []

    class Counted(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.net = _net()

        def forward(self, v):
            calls.append(len(v))
            return self.net(v)

    class Differences(GradientSource):  # a custom source calling the loss itself, 5 times
        def __call__(self, delta, samples=None):
            for _ in range(5):
                self.loss(delta)
            return torch.zeros_like(delta)

    _, meta = ExplanationGenerator(gradient=Differences, num_iter=4, history=False).run(
        image=digits_split.x_test[:2], inference_call=Counted()
    )
    assert meta["model_calls"] == len(calls) == 1 + 4 * 5 + 1  # probe, steps, the result


# ---------------------------------------------------------------- the attribution store


def test_damaged_store_files_are_named_with_the_remedy(tmp_path: Path) -> None:
    pytest.importorskip("safetensors")
    from foxcem.io.shards import DamagedFileError, load_attributions, read_manifest, save_shard

    for suffix in (".safetensors", ".pt"):
        good = tmp_path / f"shard-000000000-aaaa{suffix}"
        save_shard(good, {"indices": torch.arange(2), "attributions": torch.ones(2, 3)}, {})
        truncated = tmp_path / f"shard-000000002-bbbb{suffix}"
        save_shard(truncated, {"indices": torch.arange(2, 4), "attributions": torch.ones(2, 3)}, {})
        truncated.write_bytes(truncated.read_bytes()[:40])
        with pytest.raises(DamagedFileError, match=f"{truncated.name} is damaged.*resume"):
            load_attributions(tmp_path)
        truncated.unlink()
        good.unlink()
    (tmp_path / "manifest.json").write_text("{not json")
    with pytest.raises(DamagedFileError, match="manifest.json is damaged.*manifest rewritten"):
        read_manifest(tmp_path)
    assert issubclass(DamagedFileError, ValueError)


# ---------------------------------------------------------------- the Quantus adapter


@pytest.mark.parametrize(
    "targets, error",
    [(1.7, TypeError), (True, TypeError), ([1.7, 2.0], TypeError), (np.array([0.5, 1.0]), TypeError),
     ("3", TypeError), (np.array([1, 2, 3]), ValueError), (np.array([True, False]), TypeError)],
)  # fmt: skip
def test_quantus_targets_go_through_the_target_check(targets, error) -> None:
    from foxcem.integrations.quantus import quantus_explain_func

    explain = quantus_explain_func("saliency")
    x = np.random.default_rng(0).random((2, 1, 8, 8)).astype(np.float32)
    with pytest.raises(error, match="`targets`"):
        explain(_net(), x, targets)
    assert explain(_net(), x, np.array([1, 2])).shape == (2, 1, 8, 8)


def test_quantus_inputs_and_device_are_named() -> None:
    from foxcem.integrations.quantus import quantus_explain_func

    explain = quantus_explain_func("saliency")
    with pytest.raises(TypeError, match="`inputs` must be a NumPy array or a tensor"):
        explain(_net(), None, [0])
    with pytest.raises(TypeError, match="`inputs`"):
        explain(_net(), "images", [0])
    with pytest.raises(ValueError, match="`device` must be a torch device"):
        quantus_explain_func("saliency", device="banana")
    with pytest.raises(ValueError, match="`device` must be a torch device"):
        explain(_net(), np.zeros((1, 1, 8, 8), np.float32), [0], device="banana")


def test_the_callers_input_is_unchanged_whatever_happens(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:3].clone().requires_grad_(False)
    copy_ = x.clone()
    model = _net()
    for options in ({}, {"c": -1.0}, {"upper": math.inf}, {"add_only": "yes"}):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                CEMExplainer().calculate_features(model, x, **options, **FAST)
            except (TypeError, ValueError):
                pass
        assert torch.equal(x, copy_) and not x.requires_grad and x.grad is None
    assert isinstance(foxcem.__version__, str)


def test_loss_level_checks_name_the_argument(digits_split: DigitsSplit) -> None:
    x = digits_split.x_test[:2]
    with pytest.raises(ValueError, match="`feature_range` must be finite"):
        CEMLoss(_net(), x, feature_range=(0.0, math.inf))
    model = copy.deepcopy(_net())
    gen = ExplanationGenerator(gradient=AutogradGradient, num_iter=2, keep_best=False)
    _, meta = gen.run(image=x, inference_call=model)
    assert "found" in meta
