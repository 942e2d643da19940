"""foxcem.viz: normalisation against a brute-force NumPy version, colours, overlays, figures."""

from __future__ import annotations

import sys
from collections import OrderedDict

import numpy as np
import pytest
import torch

from foxcem.viz import (
    SIGNS,
    apply_colormap,
    attribution_to_rgb,
    enlarge,
    normalize_attribution,
    overlay,
    plot_explanation_grid,
    plot_pp_pn,
    plot_savepoints,
    to_uint8,
)


def brute_force_normalize(attr: np.ndarray, sign: str, percentile: float) -> np.ndarray:
    """The documented definition, one sample and one pixel at a time."""
    out = np.zeros((attr.shape[0], attr.shape[2], attr.shape[3]))
    for n in range(attr.shape[0]):
        summed = attr[n].sum(axis=0)
        if sign == "absolute":
            values = np.abs(summed)
        elif sign == "positive":
            values = np.where(summed > 0, summed, 0.0)
        elif sign == "negative":
            values = np.where(summed < 0, -summed, 0.0)
        else:
            values = summed
        magnitudes = np.abs(values)
        nonzero = magnitudes[magnitudes > 0]
        if nonzero.size == 0:
            continue
        scale = np.percentile(nonzero, percentile)
        low = -1.0 if sign == "all" else 0.0
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                out[n, i, j] = min(max(values[i, j] / scale, low), 1.0)
    return out


@pytest.mark.parametrize("sign", SIGNS)
@pytest.mark.parametrize("percentile", [50.0, 90.0, 99.0, 100.0])
def test_normalize_matches_brute_force(sign: str, percentile: float) -> None:
    attr = torch.randn(3, 3, 7, 9, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    attr[1, :, :2] = 0.0  # exact zeros do not enter the percentile
    got = normalize_attribution(attr, sign=sign, clip_percentile=percentile)
    expected = brute_force_normalize(attr.numpy(), sign, percentile)
    assert got.shape == (3, 7, 9) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5)


@pytest.mark.parametrize("sign", SIGNS)
def test_normalize_range_and_clipping(sign: str) -> None:
    attr = torch.randn(4, 1, 16, 16, generator=torch.Generator().manual_seed(2))
    out = normalize_attribution(attr, sign=sign, clip_percentile=90.0)
    low = -1.0 if sign == "all" else 0.0
    assert float(out.min()) >= low and float(out.max()) <= 1.0
    # roughly the top 10% of the shown magnitudes saturate at 1
    shown = out.abs() if sign == "all" else out
    for row in shown:
        nonzero = row[row > 0]
        saturated = float((nonzero >= 1.0 - 1e-6).float().mean())
        assert 0.05 <= saturated <= 0.15
    if sign == "positive":
        assert torch.equal(out == 0, (attr.squeeze(1) <= 0))
    if sign == "negative":
        assert torch.equal(out == 0, (attr.squeeze(1) >= 0))
    if sign == "all":  # the sign is kept
        assert torch.equal(torch.sign(out), torch.sign(attr.squeeze(1)))


def test_normalize_layouts_and_degenerate_maps() -> None:
    attr = torch.rand(2, 3, 5, 5)
    four = normalize_attribution(attr)
    three = normalize_attribution(attr.sum(dim=1))
    assert torch.allclose(four, three)
    assert normalize_attribution(attr[0, 0]).shape == (1, 5, 5)
    zeros = normalize_attribution(torch.zeros(2, 1, 4, 4))
    assert torch.equal(zeros, torch.zeros(2, 4, 4))
    # all-positive attributions have nothing to show for "negative"
    assert torch.equal(normalize_attribution(attr, sign="negative"), torch.zeros(2, 5, 5))
    # the input is not modified
    copy = attr.clone()
    normalize_attribution(attr, sign="all")
    assert torch.equal(attr, copy)


@pytest.mark.parametrize(
    "kwargs, error",
    [
        ({"sign": "abs"}, ValueError),
        ({"clip_percentile": 0.0}, ValueError),
        ({"clip_percentile": 101.0}, ValueError),
        ({"clip_percentile": "99"}, TypeError),
    ],
)
def test_normalize_rejects_bad_options(kwargs: dict, error: type) -> None:
    with pytest.raises(error):
        normalize_attribution(torch.rand(1, 1, 3, 3), **kwargs)
    with pytest.raises(ValueError, match="attributions"):
        normalize_attribution(torch.rand(3))


def test_colormaps() -> None:
    ramp = torch.linspace(0, 1, 11).view(1, 1, 11)
    seq = apply_colormap(ramp, "sequential")
    assert seq.shape == (1, 3, 1, 11)
    assert float(seq.min()) >= 0 and float(seq.max()) <= 1
    brightness = seq.sum(dim=1).flatten()
    assert torch.all(brightness[1:] > brightness[:-1])  # dark to bright
    div = apply_colormap(torch.tensor([[[-1.0, 0.0, 1.0]]]), "diverging")
    blue, white, red = div[0, :, 0, 0], div[0, :, 0, 1], div[0, :, 0, 2]
    assert blue[2] > blue[0] and red[0] > red[2] and float(white.min()) > 0.9
    with pytest.raises(ValueError):
        apply_colormap(ramp, "rainbow")


def test_attribution_to_rgb_and_overlay_shapes() -> None:
    attr = torch.randn(2, 3, 6, 6)
    for sign in SIGNS:
        rgb = attribution_to_rgb(attr, sign=sign)
        assert rgb.shape == (2, 3, 6, 6)
        assert float(rgb.min()) >= 0 and float(rgb.max()) <= 1
    layer = attribution_to_rgb(torch.randn(2, 32, 3, 3), size=(12, 12))  # a layer attribution
    assert layer.shape == (2, 3, 12, 12)
    gray = torch.rand(2, 1, 12, 12)
    out = overlay(gray, layer, alpha=0.25)
    assert out.shape == (2, 3, 12, 12)
    expected = 0.75 * gray.expand(-1, 3, -1, -1) + 0.25 * layer
    assert torch.allclose(out, expected, atol=1e-6)
    assert overlay(torch.rand(2, 3, 12, 12), rgb).shape == (2, 3, 12, 12)  # heatmap upsampled
    # a normalised input (outside [0, 1]) is rescaled per image
    wide = overlay(torch.randn(2, 3, 12, 12) * 5, layer, alpha=0.0)
    assert float(wide.min()) == 0.0 and float(wide.max()) == 1.0
    assert torch.equal(overlay(gray, layer, alpha=0.0)[:, :1], gray)
    with pytest.raises(ValueError):
        overlay(gray, layer[:1])
    with pytest.raises(ValueError):
        overlay(gray, layer, alpha=1.5)
    # per-pixel weights: zero weight shows the plain image, one the full alpha blend
    weights = torch.zeros(2, 3, 3)
    weights[:, 0, 0] = 1.0
    weighted = overlay(gray, layer, alpha=0.25, weights=weights)
    assert torch.allclose(weighted[:, :, -1, -1], gray.expand(-1, 3, -1, -1)[:, :, -1, -1])
    assert torch.allclose(weighted[:, :, 0, 0], expected[:, :, 0, 0], atol=1e-6)
    png = to_uint8(out)
    assert png.dtype == torch.uint8 and png.shape == out.shape


def test_visualization_module_needs_no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """The module itself imports no plotting library: load it with matplotlib made unimportable.

    (``import foxcem`` does import matplotlib today, but only through Captum: ``captum.attr``
    imports ``matplotlib.pyplot`` and Captum lists matplotlib as a hard requirement.)
    """
    import importlib.util

    import foxcem.viz

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    spec = importlib.util.spec_from_file_location("_foxcem_visualization_copy", foxcem.viz.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    heat = module.attribution_to_rgb(torch.randn(2, 1, 4, 4), sign="all")
    assert module.overlay(torch.rand(2, 1, 4, 4), heat).shape == (2, 3, 4, 4)
    with pytest.raises(ImportError, match=r"pip install 'foxcem\[demo\]'"):
        module.plot_savepoints({"1": torch.rand(1, 1, 4, 4)})


def test_missing_matplotlib_message(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    with pytest.raises(ImportError, match=r"pip install 'foxcem\[demo\]'"):
        plot_pp_pn(torch.rand(1, 1, 4, 4), pp=torch.rand(1, 1, 4, 4))


class _Threshold(torch.nn.Module):
    """Class 1 when the image's mean exceeds 0.5, else class 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.flatten(1).mean(dim=1, keepdim=True)
        return torch.cat([0.5 - m, m - 0.5], dim=1)


def _titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_figures_titles_and_sizes() -> None:
    pytest.importorskip("matplotlib")
    images = torch.full((2, 1, 8, 8), 0.25)
    model = _Threshold()
    fig = plot_explanation_grid(
        images,
        {"IG": torch.randn(2, 1, 8, 8), "Layer IG": torch.randn(2, 4, 4, 4)},
        pp={"CEM PP": images * 0.5},
        pn={"CEM PN": torch.full((2, 1, 8, 8), 0.5)},
        model=model,
        labels=[0, 0],
        sign={"IG": "all"},
    )
    titles = _titles(fig)
    assert len(fig.axes) == 2 * 5 + 2 * 2  # 5 panels per row, a colorbar per heatmap
    assert titles[:5] == [
        "input · pred 0 · true 0",
        "IG · class 0",
        "Layer IG · class 0",
        "CEM PP · pred 0",
        "x+CEM PN · 0→1",
    ]
    fig.canvas.draw()
    width, height = fig.canvas.get_width_height()
    assert width > height > 0

    savepoints = OrderedDict((str(k), torch.full((1, 1, 8, 8), 0.1 * k)) for k in (1, 2, 3))
    fig = plot_savepoints(savepoints, image=images[:1], model=model, mode="PN")
    titles = _titles(fig)
    assert titles[0].startswith("Iteration: 1") and titles[-1].startswith("Orig + Perturbation")
    assert titles[-1].endswith("0→1") and len(titles) == 4
    fig = plot_savepoints(savepoints, model=model, mode="PP")
    assert len(fig.axes) == 3
    fig = plot_pp_pn(images, pp=images * 0.5, pn=torch.full((2, 1, 8, 8), 0.5), model=model)
    assert len(fig.axes) == 2 * 3 and _titles(fig)[:3] == ["x · class 0", "PP · class 0",
                                                          "x+PN · 0→1"]  # fmt: skip
    with pytest.raises(ValueError):
        plot_savepoints({})
    with pytest.raises(ValueError, match="samples"):
        plot_explanation_grid(images, {"IG": torch.randn(3, 1, 8, 8)})


@pytest.mark.parametrize("shape", [(3, 8, 5), (2, 3, 8, 5)])
def test_enlarge_repeats_pixels_by_the_smallest_sufficient_factor(shape: tuple) -> None:
    images = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    big = enlarge(images, 12)  # short side 5 -> factor 3
    expected = images.repeat_interleave(3, dim=-2).repeat_interleave(3, dim=-1)
    assert torch.equal(big, expected)
    assert enlarge(images, 5) is images


def _png_size(fig, tmp_path, name: str) -> tuple[int, int]:
    path = tmp_path / name
    fig.savefig(path, dpi=50)
    from torchvision.io import read_image

    return tuple(read_image(str(path)).shape[1:])


def test_visualize_image_attr_methods_sizes_and_colorbars(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    from foxcem.viz import visualize_image_attr

    image = torch.rand(3, 16, 16, generator=torch.Generator().manual_seed(0))
    attr = torch.randn(3, 16, 16, generator=torch.Generator().manual_seed(1))
    for method, bars in (("heat_map", 1), ("blended_heat_map", 1), ("original_image", 0),
                         ("masked_image", 0), ("alpha_scaling", 0)):  # fmt: skip
        fig, ax = visualize_image_attr(
            attr, image, method, sign="all", mean=(0.5,) * 3, std=(0.2,) * 3, target=2,
            class_names=["cat", "dog", "fox"], fig_size=(3, 3),
        )  # fmt: skip
        assert len(fig.axes) == 1 + bars and ax.get_title().endswith("class fox")
        assert _png_size(fig, tmp_path, f"{method}.png") == (150, 150)
    with pytest.raises(ValueError, match="original_image"):
        visualize_image_attr(attr, None, "blended_heat_map")
    with pytest.raises(ValueError, match="method"):
        visualize_image_attr(attr, image, "sparkles")


def test_cem_figures_draw_a_missing_explanation_as_such(tmp_path) -> None:
    pytest.importorskip("matplotlib")
    images = torch.full((2, 1, 8, 8), 0.25)
    tiny = torch.full((2, 1, 8, 8), 1e-6)  # a near-zero δ that a stretch would blow up
    fig = plot_pp_pn(images, pp=tiny, pn=tiny, found_pp=[True, False], found_pn=[False, True],
                     model=_Threshold())  # fmt: skip
    titles = _titles(fig)
    assert titles[4] == "no PP found" and titles[2] == "no PN found"
    assert _png_size(fig, tmp_path, "pp_pn.png")[1] > _png_size(fig, tmp_path, "pp_pn.png")[0]
    grid = plot_explanation_grid(images, pp={"CEM PP": tiny}, found={"CEM PP": [False, True]})
    assert _titles(grid)[1] == "CEM PP: no PP found"
