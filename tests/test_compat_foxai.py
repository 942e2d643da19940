"""FoXAI's explainer tests, ported to ``foxcem.compat.foxai``, and the methods FoXAI has that
foxcem added for it (XRAI, FullGrad, Layer Noise Tunnel, LRP's automatic rules), each checked
against an independent reference."""

from __future__ import annotations

import pytest
import torch
from captum.attr import LRP, IntegratedGradients, LayerGradCam
from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule
from torch import nn

import foxcem
from foxcem.attribution.fullgrad import fullgrad_terms
from foxcem.attribution.lrp import PassThroughRule, automatic_rules
from foxcem.attribution.xrai import xrai_ranking
from foxcem.compat.foxai import CVClassificationExplainers, ExplainerWithParams, FoXaiExplainer

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


class SampleModel(nn.Module):
    """A small MNIST-like CNN (1×28×28 inputs), with dropout, as in FoXAI's tests."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv1 = nn.Conv2d(1, 8, 3, 1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(8, 16, 3, 1)
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.dropout1 = nn.Dropout(0.25)
        self.flatten = nn.Flatten()
        self.fc1 = nn.Linear(16 * 12 * 12, 32)
        self.relu3 = nn.ReLU()
        self.dropout2 = nn.Dropout(0.5)
        self.fc2 = nn.Linear(32, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.relu2(self.conv2(self.relu1(self.conv1(x)))))
        x = self.relu3(self.fc1(self.flatten(self.dropout1(x))))
        return self.fc2(self.dropout2(x))


@pytest.mark.parametrize("explainer_class", list(CVClassificationExplainers))
@pytest.mark.parametrize("batch_size", [1, 3])
def test_explainers_for_batch_data(explainer_class, batch_size) -> None:
    classifier = SampleModel()
    classifier.train()
    torch.manual_seed(1)
    images = torch.rand(batch_size, 1, 28, 28)
    function_kwargs = {}
    if "layer" in explainer_class.explainer().options():
        function_kwargs["layer"] = classifier.conv2  # FoXAI's test: the last convolution
    baselines = None
    if "SHAP" in explainer_class.name:
        baselines = torch.randn((2 * batch_size,) + tuple(images.shape[1:]))
    with FoXaiExplainer(
        model=classifier,
        explainers=[
            ExplainerWithParams(
                explainer_name=explainer_class, baselines=baselines, **function_kwargs
            )
        ],
    ) as xai_model:
        _, explanations = xai_model(images)
    attributions = explanations[f"{explainer_class.name}_0"]
    assert attributions.dim() == images.dim()
    assert attributions.shape[0] == batch_size
    assert torch.isfinite(attributions).all()
    assert classifier.training  # the model's mode is back


@pytest.mark.parametrize(
    "name, captum_class",
    [("layer_gradcam", LayerGradCam), ("integrated_gradients", IntegratedGradients)],
)
def test_an_empty_result_raises_runtime_error(monkeypatch, name, captum_class) -> None:
    monkeypatch.setattr(captum_class, "attribute", lambda *a, **k: torch.Tensor())
    model = SampleModel().eval()
    kwargs = {"layer": model.conv1} if name == "layer_gradcam" else {}
    with pytest.raises(RuntimeError, match="empty"):
        foxcem.get_explainer(name).calculate_features(model, torch.zeros(1, 1, 28, 28), 0, **kwargs)


def test_one_keyword_set_for_every_method_but_misspellings_still_fail() -> None:
    model, x = SampleModel().eval(), torch.rand(2, 1, 28, 28)
    common = {"baselines": None, "layer": None, "feature_mask": None, "n_steps": None}
    for name in ("saliency", "guided_backprop", "lrp", "deconvolution", "fullgrad"):
        explainer = foxcem.get_explainer(name)
        given = {k: v for k, v in common.items() if k not in explainer.options()}
        assert explainer.calculate_features(model, x, 0, **given).shape[0] == 2
    with pytest.raises(TypeError, match="baseline"):
        foxcem.get_explainer("saliency").calculate_features(model, x, 0, baseline=None)


def test_lrp_automatic_rules_match_captum_with_the_same_rules_attached() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.ReLU(), nn.Flatten(),
        nn.Linear(4 * 4 * 4, 8), nn.Sigmoid(), nn.Linear(8, 3),
    ).eval()  # fmt: skip
    x = torch.rand(2, 1, 8, 8)
    rules = automatic_rules(model, {})
    assert isinstance(rules[model[0]], GammaRule) and isinstance(rules[model[2]], GammaRule)
    assert isinstance(rules[model[5]], EpsilonRule) and isinstance(rules[model[7]], EpsilonRule)
    assert isinstance(rules[model[4]], PassThroughRule) and isinstance(
        rules[model[6]], PassThroughRule
    )
    ours = foxcem.get_explainer("lrp").calculate_features(model, x, torch.tensor([0, 2]))
    for layer, rule in automatic_rules(model, {}).items():
        layer.rule = rule
    reference = LRP(model).attribute(x, target=torch.tensor([0, 2]))
    torch.testing.assert_close(ours, reference)
    with pytest.raises(ValueError, match="Flatten"):
        foxcem.get_explainer("lrp").calculate_features(model, x, 0, auto_rules=False)


def test_fullgrad_terms_sum_to_the_score() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 8, 3), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 2 * 2, 5),
    ).double()  # fmt: skip
    model[1].running_mean.uniform_(-0.5, 0.5)
    model[1].running_var.uniform_(0.5, 2.0)
    model.eval()
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64)
    target = torch.tensor([0, 1, 4, 2])
    terms = fullgrad_terms(model, x, target)
    total = terms.input.flatten(1).sum(1) + sum(b.flatten(1).sum(1) for b in terms.biases)
    with torch.no_grad():
        scores = model(x)[torch.arange(4), target]
    torch.testing.assert_close(total, scores)  # completeness
    assert len(terms.biases) == 4  # conv, batch norm, conv, linear
    saliency = foxcem.get_explainer("fullgrad").calculate_features(model, x, target)
    assert saliency.shape == (4, 1, 8, 8) and bool((saliency >= 0).all())


def test_xrai_ranks_regions_by_their_integrated_gradients() -> None:
    model, x = SampleModel().eval(), torch.rand(2, 1, 28, 28)
    labels = torch.arange(16).view(4, 4).repeat_interleave(7, 0).repeat_interleave(7, 1)
    ours = foxcem.get_explainer("xrai").calculate_features(
        model, x, 3, segments=labels[None].expand(2, -1, -1)
    )
    ig = IntegratedGradients(model)
    reference = (
        sum(
            ig.attribute(x, baselines=b, target=3, n_steps=50, method="gausslegendre")
            for b in (float(x.min()), float(x.max()))
        )
        / 2
    )
    per_pixel = reference.sum(1)
    for i in range(2):
        region_sums = torch.stack([per_pixel[i][labels == r].sum() for r in range(16)])
        region_values = torch.stack([ours[i, 0][labels == r][0] for r in range(16)])
        torch.testing.assert_close(region_values, region_sums / 49, rtol=1e-4, atol=1e-6)
        assert torch.equal(region_values.argsort(), region_sums.argsort())
    nested = foxcem.get_explainer("xrai").calculate_features(model, x, 3)
    assert nested.shape == (2, 1, 28, 28) and torch.isfinite(nested).all()


def test_xrai_ranking_prefers_dense_regions_and_needs_full_cover() -> None:
    attribution = torch.tensor([[4.0, 0.0], [1.0, 1.0]])
    masks = torch.tensor([[[True, False], [False, False]], [[True, True], [True, True]]])
    ranked = xrai_ranking(attribution, masks)
    assert ranked[0, 0] == 4.0 and torch.allclose(ranked.flatten()[1:], torch.tensor(2 / 3))
    with pytest.raises(ValueError, match="cover"):
        xrai_ranking(attribution, masks[:1])


def test_layer_noise_tunnel_is_noise_tunnel_over_layer_integrated_gradients() -> None:
    model, x = SampleModel().eval(), torch.rand(2, 1, 28, 28)
    ours = foxcem.get_explainer("layer_noise_tunnel").calculate_features(
        model, x, 1, layer=model.conv1, nt_samples=3, stdevs=0.1, n_steps=8
    )
    reference = foxcem.get_explainer("noise_tunnel", explainer="layer_integrated_gradients")
    expected = reference.calculate_features(
        model, x, 1, layer=model.conv1, nt_samples=3, stdevs=0.1, n_steps=8
    )
    torch.testing.assert_close(ours, expected)
    assert ours.shape == (2, 8, 26, 26)
    with pytest.raises(TypeError, match="layer method"):
        foxcem.LayerNoiseTunnelCVExplainer("saliency")


def test_segmentation_confidence_and_selective_region() -> None:
    logits = torch.randn(2, 3, 5, 5)
    scores = foxcem.SegmentationConfidence()(logits)
    torch.testing.assert_close(scores, logits.softmax(1).mean((2, 3)))
    area = foxcem.SegmentationConfidence(method="area")(logits)
    winners = logits.argmax(1)
    expected = torch.stack([(winners == k).float().mean((1, 2)) for k in range(3)], 1)
    torch.testing.assert_close(area, expected)
    with pytest.raises(ValueError, match="per-pixel"):
        foxcem.SegmentationConfidence()(torch.randn(2, 3))

    slide = torch.rand(1, 3, 40, 50)
    region = foxcem.SelectiveRegion(slide, top=10, left=20, height=8, width=6)
    tile = region.crop(slide)
    assert tile.shape == (1, 3, 8, 6)
    torch.testing.assert_close(region(tile), slide)  # pasting the tile back gives the slide
    changed = region(torch.zeros(2, 3, 8, 6))
    assert changed.shape == (2, 3, 40, 50) and bool((changed[:, :, 10:18, 20:26] == 0).all())
    torch.testing.assert_close(changed[:, :, :10], slide[:, :, :10].expand(2, -1, -1, -1))
    with pytest.raises(ValueError, match="leaves"):
        foxcem.SelectiveRegion(slide, top=35, left=0, height=8, width=6)

    # A segmentation model explained by CEM through both, the gradient passing through.
    torch.manual_seed(0)
    segmenter = nn.Conv2d(3, 2, 3, padding=1).eval()
    wrapped = foxcem.InferenceWrapper(segmenter, preprocess=region,
                                      quantizer=foxcem.SegmentationConfidence())  # fmt: skip
    pn = foxcem.CEMExplainer().calculate_features(wrapped, tile, mode="PN", K=0.0, num_iter=50)
    assert pn.shape == tile.shape and torch.isfinite(pn).all()


@pytest.mark.parametrize("name", ["layer_gradcam", "layer_integrated_gradients", "layer_lrp"])
def test_layer_methods_default_to_the_last_convolution(name) -> None:
    model, x = SampleModel().eval(), torch.rand(2, 1, 28, 28)
    explainer = foxcem.get_explainer(name)
    kwargs = {"upsample": False} if name == "layer_gradcam" else {}
    default = explainer.calculate_features(model, x, 2, **kwargs)
    explicit = explainer.calculate_features(model, x, 2, layer=model.conv2, **kwargs)
    torch.testing.assert_close(default, explicit)
