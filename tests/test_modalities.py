"""Text, tabular and multi-input models through the one contract: the same numbers as Captum's
own calls (bitwise, same seeds), and one clear error for each bad input of the new kinds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from captum._utils.models.linear_model import SkLearnLasso
from captum.attr import (
    DeepLift,
    FeatureAblation,
    FeaturePermutation,
    GradientShap,
    IntegratedGradients,
    KernelShap,
    LayerConductance,
    LayerDeepLift,
    LayerGradientShap,
    LayerIntegratedGradients,
    Lime,
    NoiseTunnel,
    Occlusion,
    Saliency,
    ShapleyValueSampling,
    configure_interpretable_embedding_layer,
    remove_interpretable_embedding_layer,
)
from torch import nn

import foxcem
from foxcem import InferenceWrapper, get_explainer
from foxcem.core.segments import resolve_labels

pytestmark = pytest.mark.filterwarnings("ignore:You are providing multiple inputs")

VOCAB, PAD = 40, 0


class TextModel(nn.Module):
    """Token and position embeddings (two independent layers, as BERT's), a small MLP."""

    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(VOCAB, 8, padding_idx=PAD)
        self.position = nn.Embedding(12, 8)
        self.fc1 = nn.Linear(8, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 3)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        steps = torch.arange(ids.shape[1], device=ids.device).expand(ids.shape[0], -1)
        hidden = self.embedding(ids) + self.position(steps)
        return self.fc2(self.relu(self.fc1(hidden.mean(dim=1))))


class TableModel(nn.Module):
    def __init__(self, features: int = 30) -> None:
        super().__init__()
        self.fc1 = nn.Linear(features, 16)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(16, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.relu(self.fc1(x)))


class TwoInputs(nn.Module):
    """An image and a table row, fused."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.relu = nn.ReLU()
        self.tab = nn.Linear(5, 8)
        self.relu2 = nn.ReLU()
        self.head = nn.Linear(4 * 64 + 8, 3)

    def forward(self, image: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        a = self.relu(self.conv(image)).flatten(1)
        return self.head(torch.cat([a, self.relu2(self.tab(row))], dim=1))


@pytest.fixture(autouse=True)
def _one_thread():
    """Captum's reference on the thread count foxcem picks for these small calls (one): on some
    CPUs a matmul's summation order, and so its last bit, depends on the thread count."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _seeded(seed: int = 0) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed)


@pytest.fixture(scope="module")
def text() -> tuple[nn.Module, torch.Tensor]:
    _seeded()
    model = TextModel().eval()
    ids = torch.randint(1, VOCAB, (4, 12), generator=torch.Generator().manual_seed(1))
    ids[:, -3:] = PAD
    return model, ids


@pytest.fixture(scope="module")
def table() -> tuple[nn.Module, torch.Tensor]:
    _seeded()
    return TableModel().eval(), torch.randn(6, 30, generator=torch.Generator().manual_seed(2))


@pytest.fixture(scope="module")
def pair() -> tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]:
    _seeded()
    generator = torch.Generator().manual_seed(3)
    return TwoInputs().eval(), (torch.rand(3, 1, 8, 8, generator=generator),
                                torch.randn(3, 5, generator=generator))  # fmt: skip


def _predict(model: nn.Module, inputs) -> torch.Tensor:
    with torch.no_grad():
        return model(*(inputs if isinstance(inputs, tuple) else (inputs,))).argmax(dim=1)


def _same(ours, theirs) -> None:
    if isinstance(theirs, (tuple, list)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same(a, b)
        return
    assert torch.equal(ours, theirs.detach()), (ours - theirs).abs().max()


# ---------------------------------------------------------------- text: token ids at a layer


@pytest.mark.parametrize(
    "name, captum_class, options",
    [
        ("layer_integrated_gradients", LayerIntegratedGradients,
         {"n_steps": 16, "internal_batch_size": None}),
        ("layer_deeplift", LayerDeepLift, {}),
    ],
)  # fmt: skip
def test_text_layer_methods_on_token_ids_equal_captum(text, name, captum_class, options) -> None:
    model, ids = text
    target = _predict(model, ids)
    pads = torch.full_like(ids, PAD)
    ours = get_explainer(name).calculate_features(
        model, ids, target, layer=model.embedding, baselines=pads, **options
    )
    options.pop("internal_batch_size", None)
    theirs = captum_class(model, model.embedding).attribute(
        ids, baselines=pads, target=target, **options
    )
    assert ours.shape == (4, 12, 8)
    _same(ours, theirs)


def _captum_on_embeddings(model, ids, pads, make, **options):
    """Captum's recipe for methods that interpolate inputs: embeddings as the input."""
    embedding = configure_interpretable_embedding_layer(model, "embedding")
    try:
        inputs = embedding.indices_to_embeddings(ids)
        baselines = embedding.indices_to_embeddings(pads)
        return make(model, embedding).attribute(inputs, baselines=baselines, **options)
    finally:
        remove_interpretable_embedding_layer(model, embedding)


def test_text_layer_conductance_and_gradient_shap_equal_captums_recipe(text) -> None:
    model, ids = text
    target = _predict(model, ids)
    ours = get_explainer("layer_conductance").calculate_features(
        model, ids, target, layer=model.embedding, baselines=PAD, n_steps=16,
        internal_batch_size=None,
    )  # fmt: skip
    theirs = _captum_on_embeddings(model, ids, torch.full_like(ids[:1], PAD), LayerConductance,
                                   target=target, n_steps=16)  # fmt: skip
    assert ours.shape == (4, 12, 8)
    _same(ours, theirs)
    pads = torch.full((2, 12), PAD)
    ours = get_explainer("layer_gradient_shap").calculate_features(
        model, ids, target, layer=model.embedding, baselines=pads, n_samples=4, seed=5
    )
    _seeded(5)
    theirs = _captum_on_embeddings(model, ids, pads, LayerGradientShap, target=target, n_samples=4)
    _same(ours, theirs)
    assert isinstance(model.embedding, nn.Embedding)  # swapped back
    with pytest.raises(TypeError, match="token ids cannot: explain them at their nn.Embedding"):
        get_explainer("layer_conductance").calculate_features(model, ids, layer=model.fc1)


def test_a_list_of_layers_equals_captum(text) -> None:
    model, ids = text
    target = _predict(model, ids)
    ours = get_explainer("layer_ig").calculate_features(
        model, ids, target, layer=[model.embedding, model.position], baselines=PAD, n_steps=8,
        internal_batch_size=None,
    )  # fmt: skip
    theirs = LayerIntegratedGradients(model, [model.embedding, model.position]).attribute(
        ids, baselines=PAD, target=target, n_steps=8
    )
    assert isinstance(ours, list) and [a.shape for a in ours] == [(4, 12, 8), (4, 12, 8)]
    _same(ours, theirs)
    with pytest.raises(TypeError, match="`layer` must be one torch.nn.Module for layer_gradcam"):
        get_explainer("gradcam").calculate_features(model, ids, layer=[model.fc1])


# ---------------------------------------------------------------- tables


@pytest.mark.parametrize(
    "name, make, options",
    [
        ("integrated_gradients", IntegratedGradients, {"n_steps": 20}),
        ("saliency", Saliency, {}),
        ("deeplift", DeepLift, {}),
    ],
)
def test_tabular_gradient_methods_equal_captum(table, name, make, options) -> None:
    model, x = table
    target = _predict(model, x)
    extra = {"internal_batch_size": None} if name == "integrated_gradients" else {}
    ours = get_explainer(name).calculate_features(model, x, target, **options, **extra)
    theirs = make(model).attribute(x, target=target, **options)
    assert ours.shape == (6, 30)
    _same(ours, theirs)


def test_tabular_gradient_shap_and_noise_tunnel_equal_captum(table) -> None:
    model, x = table
    target = _predict(model, x)
    background = torch.randn(10, 30, generator=torch.Generator().manual_seed(7))
    ours = get_explainer("gradient_shap").calculate_features(
        model, x, target, baselines=background, n_samples=6, stdevs=0.1, seed=4,
        internal_batch_size=None,
    )  # fmt: skip
    _seeded(4)
    theirs = GradientShap(model).attribute(x, background, target=target, n_samples=6, stdevs=0.1)
    _same(ours, theirs)
    ours = get_explainer("noise_tunnel", explainer="saliency").calculate_features(
        model, x, target, nt_samples=4, stdevs=0.2, seed=9, nt_samples_batch_size=None
    )
    _seeded(9)
    theirs = NoiseTunnel(Saliency(model)).attribute(x, target=target, nt_samples=4, stdevs=0.2)
    _same(ours, theirs)


def test_tabular_occlusion_needs_a_window_and_then_equals_captum(table) -> None:
    model, x = table
    target = _predict(model, x)
    with pytest.raises(ValueError, match="default window .* needs images"):
        get_explainer("occlusion").calculate_features(model, x, target)
    ours = get_explainer("occlusion").calculate_features(
        model, x, target, sliding_window_shapes=(3,), strides=3, perturbations_per_eval=1
    )
    theirs = Occlusion(model).attribute(x, (3,), strides=3, target=target)
    _same(ours, theirs)


def test_grad_cam_says_it_needs_images(table) -> None:
    model, x = table
    with pytest.raises(ValueError, match="upsampling the map to the input .* needs images"):
        get_explainer("gradcam").calculate_features(model, x, layer=model.fc1)
    cam = get_explainer("gradcam").calculate_features(model, x, layer=model.fc1, upsample=False)
    assert cam.shape[0] == 6


# ---------------------------------------------------------------- several inputs


@pytest.mark.parametrize(
    "name, make",
    [("integrated_gradients", IntegratedGradients), ("saliency", Saliency), ("deeplift", DeepLift)],
)
def test_tuples_of_inputs_give_tuples_equal_to_captum(pair, name, make) -> None:
    model, inputs = pair
    target = _predict(model, inputs)
    extra = {"internal_batch_size": None, "n_steps": 8} if name == "integrated_gradients" else {}
    ours = get_explainer(name).calculate_features(model, inputs, target, **extra)
    theirs = make(model).attribute(inputs, target=target, **({"n_steps": 8} if extra else {}))
    assert isinstance(ours, tuple) and [a.shape for a in ours] == [(3, 1, 8, 8), (3, 5)]
    _same(ours, theirs)
    ours, delta = get_explainer("ig").calculate_features(
        model, inputs, target, n_steps=8, return_convergence_delta=True
    )
    assert isinstance(ours, tuple) and delta.shape == (3,)


def test_tuple_baselines_are_one_per_input(pair) -> None:
    model, inputs = pair
    target = _predict(model, inputs)
    ours = get_explainer("ig").calculate_features(
        model, inputs, target, baselines=(0.5, torch.zeros(1, 5)), n_steps=8,
        internal_batch_size=None,
    )  # fmt: skip
    theirs = IntegratedGradients(model).attribute(
        inputs, baselines=(0.5, torch.zeros(1, 5)), target=target, n_steps=8
    )
    _same(ours, theirs)
    with pytest.raises(ValueError, match="`baselines` given as a tuple must hold one baseline"):
        get_explainer("ig").calculate_features(model, inputs, target, baselines=(0.0,))


# ---------------------------------------------------------------- the perturbation family

PERTURBATION = [
    ("feature_ablation", FeatureAblation, {}),
    ("shapley_value_sampling", ShapleyValueSampling, {"n_samples": 3}),
    ("kernel_shap", KernelShap, {"n_samples": 20}),
    ("lime", None, {"n_samples": 20}),
    ("feature_permutation", FeaturePermutation, {}),
]


@pytest.mark.parametrize("name, make, options", PERTURBATION)
def test_perturbation_methods_equal_captum_on_the_same_mask(name, make, options) -> None:
    _seeded()
    model = nn.Sequential(nn.Flatten(), nn.Linear(3 * 16 * 16, 5)).eval()
    x = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    target = _predict(model, x)
    mask = resolve_labels("grid:4", x, 1).unsqueeze(1)
    ours = get_explainer(name).calculate_features(
        model, x, target, feature_mask=mask, perturbations_per_eval=1, seed=11, **options
    )
    by_segments = get_explainer(name).calculate_features(
        model, x, target, segments="grid:4", perturbations_per_eval=1, seed=11, **options
    )
    _same(by_segments, ours)  # "grid:4" is exactly the mask it stands for
    algorithm = make(model) if make is not None else Lime(model, SkLearnLasso(alpha=0.01))
    _seeded(11)
    theirs = algorithm.attribute(x, target=target, feature_mask=mask, **options)
    _same(ours, theirs)
    auto = get_explainer(name).calculate_features(
        model, x, target, segments="grid:4", seed=11, **options
    )
    torch.testing.assert_close(auto, ours, rtol=1e-4, atol=1e-5)  # batched passes, same values


def test_perturbation_on_tables_with_feature_groups_and_on_tuples(table, pair) -> None:
    model, x = table
    groups = torch.arange(30) // 3  # ten groups of three columns
    grouped = get_explainer("feature_ablation").calculate_features(model, x, segments=groups)
    assert grouped.shape == (6, 30)
    assert torch.equal(grouped[:, 0], grouped[:, 2])  # one value per group
    two, inputs = pair
    out = get_explainer("kernel_shap").calculate_features(
        two, inputs, segments=("grid:2", torch.zeros(5, dtype=torch.long)), n_samples=30
    )
    assert isinstance(out, tuple) and out[1].shape == (3, 5)


def test_perturbation_methods_on_a_numpy_and_an_onnx_model(tmp_path: Path) -> None:
    _seeded()
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 4)).eval()
    x = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(5))

    def numpy_model(array: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return model(torch.from_numpy(array)).numpy()

    wrapped = InferenceWrapper(numpy_model, numpy=True)
    for name in ("feature_ablation", "kernel_shap", "lime", "shapley_value_sampling"):
        expected = get_explainer(name).calculate_features(model, x, segments="grid:2", seed=1)
        got = get_explainer(name).calculate_features(wrapped, x, segments="grid:2", seed=1)
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    path = tmp_path / "m.onnx"
    torch.onnx.export(model, (x[:1],), str(path), dynamo=False)  # a fixed batch of one
    session = InferenceWrapper(onnxruntime.InferenceSession(str(path)))
    got = get_explainer("feature_ablation").calculate_features(session, x, segments="grid:2")
    expected = get_explainer("feature_ablation").calculate_features(model, x, segments="grid:2")
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------- bad input of the new kinds


def test_bad_inputs_of_the_new_kinds_are_named(text, table, pair) -> None:
    model, ids = text
    with pytest.raises(TypeError, match=r"`input_data` must be a tensor or a tuple of tensors; "
                                        r"item 1 is list"):  # fmt: skip
        get_explainer("ig").calculate_features(pair[0], (pair[1][0], [1, 2]))
    with pytest.raises(ValueError, match="must share the sample dimension N"):
        get_explainer("ig").calculate_features(pair[0], (pair[1][0], pair[1][1][:2]))
    bad = ids.clone()
    bad[0, 0] = VOCAB + 3
    with pytest.raises(ValueError, match=r"`input_data` holds token ids in \[.*\], outside the "
                                         r"embedding's \[0, 39\]"):  # fmt: skip
        get_explainer("layer_ig").calculate_features(model, bad, layer=model.embedding)
    with pytest.raises(ValueError, match="`baselines` holds token ids"):
        get_explainer("layer_ig").calculate_features(model, ids, layer=model.embedding,
                                                     baselines=-1)  # fmt: skip
    with pytest.raises(TypeError, match="holds integers .* use a layer method on the embedding"):
        get_explainer("ig").calculate_features(model, ids)
    tab_model, x = table
    with pytest.raises(ValueError, match="`feature_mask` of shape"):
        get_explainer("feature_ablation").calculate_features(
            tab_model, x, feature_mask=torch.zeros(6, 29, dtype=torch.long)
        )
    with pytest.raises(ValueError, match="give `feature_mask` or `segments`, not both"):
        get_explainer("lime").calculate_features(
            tab_model, x, feature_mask=torch.zeros(1, 30, dtype=torch.long), segments="grid:2"
        )
    with pytest.raises(ValueError, match="`segments` 'grid:2' applies to images or sequences"):
        get_explainer("lime").calculate_features(tab_model, x, segments="grid:2")
    assert isinstance(foxcem.__version__, str)
