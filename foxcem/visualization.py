"""Draw attributions and contrastive explanations.

Two layers:

* pure-torch functions, usable anywhere (TensorBoard logging, PNG writing) with no plotting
  library: :func:`normalize_attribution`, :func:`attribution_to_rgb`, :func:`apply_colormap`,
  :func:`overlay`, :func:`to_uint8`;
* matplotlib figures, which need the ``demo`` extra (``pip install 'foxcem[demo]'``) and import
  matplotlib only when called: :func:`plot_explanation_grid`, :func:`plot_savepoints`,
  :func:`plot_pp_pn`. They build a :class:`matplotlib.figure.Figure` without pyplot, so they
  change no global backend state; save one with ``fig.savefig(path)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch
import torch.nn.functional as F

from foxcem.checks import check_choice, model_device

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "SIGNS",
    "normalize_attribution",
    "apply_colormap",
    "attribution_to_rgb",
    "overlay",
    "to_uint8",
    "enlarge",
    "plot_explanation_grid",
    "plot_savepoints",
    "plot_pp_pn",
]

#: Accepted values of ``sign``.
SIGNS = ("absolute", "positive", "negative", "all")

# Small built-in colormaps: anchor colours, linearly interpolated (close to matplotlib's
# "inferno" and "RdBu_r"), so that no plotting library is needed to colour a heatmap.
_SEQUENTIAL = (
    (0.001, 0.000, 0.014),
    (0.258, 0.039, 0.406),
    (0.578, 0.148, 0.404),
    (0.865, 0.317, 0.226),
    (0.988, 0.645, 0.040),
    (0.988, 0.998, 0.645),
)
_DIVERGING = (
    (0.020, 0.188, 0.380),
    (0.263, 0.576, 0.765),
    (0.820, 0.898, 0.941),
    (0.969, 0.969, 0.969),
    (0.992, 0.859, 0.780),
    (0.839, 0.376, 0.302),
    (0.404, 0.000, 0.122),
)
_COLORMAPS = {"sequential": _SEQUENTIAL, "diverging": _DIVERGING}
_MPL_CMAPS = {"sequential": "inferno", "diverging": "RdBu_r"}


# --------------------------------------------------------------------------------------------
# pure torch
# --------------------------------------------------------------------------------------------


def _as_batch_of_maps(attributions: torch.Tensor, name: str = "attributions") -> torch.Tensor:
    """(N, C, H, W) -> channel sum (N, H, W); (N, H, W) kept; (H, W) -> (1, H, W)."""
    if not isinstance(attributions, torch.Tensor):
        attributions = torch.as_tensor(attributions)
    if attributions.dim() == 4:
        return attributions.sum(dim=1)
    if attributions.dim() == 3:
        return attributions
    if attributions.dim() == 2:
        return attributions.unsqueeze(0)
    raise ValueError(
        f"`{name}` must be (N, C, H, W), (N, H, W) or (H, W), got shape {tuple(attributions.shape)}"
    )


def normalize_attribution(
    attributions: torch.Tensor,
    sign: str = "absolute",
    clip_percentile: float = 99.0,
) -> torch.Tensor:
    """Reduce channels, keep one sign, clip outliers and scale each map to a fixed range.

    Steps, per sample:

    1. channels are summed: (N, C, H, W) -> (N, H, W) (an (N, H, W) input is used as is, an
       (H, W) input becomes (1, H, W));
    2. ``sign`` selects what is shown: ``"absolute"`` the magnitude ``|a|``, ``"positive"`` the
       positive part ``max(a, 0)``, ``"negative"`` the magnitude of the negative part
       ``max(-a, 0)``, ``"all"`` the signed value ``a``;
    3. the scale is the ``clip_percentile``-th percentile (linear interpolation, as
       ``numpy.percentile``) of the non-zero magnitudes of the selected values; values are
       divided by it and clipped, so the top ``100 - clip_percentile`` percent saturate.

    A map with nothing to show (e.g. no positive value for ``"positive"``) becomes all zeros.

    Args:
        attributions: a real tensor, (N, C, H, W), (N, H, W) or (H, W).
        sign: one of ``"absolute"``, ``"positive"``, ``"negative"``, ``"all"``.
        clip_percentile: in (0, 100]; 100 scales by the maximum (no clipping).

    Returns:
        A float32 tensor (N, H, W) on the input's device, in [0, 1], or in [-1, 1] for
        ``sign="all"``.
    """
    check_choice(sign, "sign", SIGNS)
    if isinstance(clip_percentile, bool) or not isinstance(clip_percentile, (int, float)):
        raise TypeError(f"`clip_percentile` must be a number, got {type(clip_percentile).__name__}")
    if not 0.0 < float(clip_percentile) <= 100.0:
        raise ValueError(f"`clip_percentile` must be in (0, 100], got {clip_percentile}")
    maps = _as_batch_of_maps(attributions).detach()
    if maps.is_complex():
        raise TypeError("`attributions` must be real")
    maps = maps.float()
    if sign == "absolute":
        values = maps.abs()
    elif sign == "positive":
        values = maps.clamp(min=0)
    elif sign == "negative":
        values = (-maps).clamp(min=0)
    else:
        values = maps
    magnitudes = values.abs().flatten(1)
    q = float(clip_percentile) / 100.0
    scales = torch.zeros(values.shape[0], dtype=values.dtype, device=values.device)
    for i, row in enumerate(magnitudes):
        nonzero = row[row > 0]
        if nonzero.numel() > 0:
            scales[i] = torch.quantile(nonzero.double(), q).to(values.dtype)
    safe = torch.where(scales > 0, scales, torch.ones_like(scales)).view(-1, 1, 1)
    low = -1.0 if sign == "all" else 0.0
    out = (values / safe).clamp(low, 1.0)
    return torch.where((scales > 0).view(-1, 1, 1), out, torch.zeros_like(out))


def apply_colormap(values: torch.Tensor, kind: str = "sequential") -> torch.Tensor:
    """Colour scalar maps with a small built-in colormap.

    Args:
        values: (N, H, W) (or (H, W)); in [0, 1] for ``"sequential"`` (an inferno-like map), in
            [-1, 1] for ``"diverging"`` (blue - white - red, like RdBu_r). Values outside are
            clipped.
        kind: ``"sequential"`` or ``"diverging"``.

    Returns:
        (N, 3, H, W) float32 RGB in [0, 1].
    """
    if kind not in _COLORMAPS:
        raise ValueError(f"`kind` must be one of {sorted(_COLORMAPS)}, got {kind!r}")
    maps = _as_batch_of_maps(values, "values").float()
    if kind == "diverging":
        maps = (maps.clamp(-1.0, 1.0) + 1.0) / 2.0
    else:
        maps = maps.clamp(0.0, 1.0)
    anchors = torch.tensor(_COLORMAPS[kind], dtype=torch.float32, device=maps.device)
    position = maps * (len(anchors) - 1)
    lower = position.floor().long().clamp(max=len(anchors) - 2)
    frac = (position - lower).unsqueeze(-1)
    rgb = anchors[lower] * (1.0 - frac) + anchors[lower + 1] * frac  # (N, H, W, 3)
    return rgb.permute(0, 3, 1, 2).contiguous()


def attribution_to_rgb(
    attributions: torch.Tensor,
    sign: str = "absolute",
    clip_percentile: float = 99.0,
    size: Optional[Sequence[int]] = None,
) -> torch.Tensor:
    """Attributions as RGB heatmaps, ready for TensorBoard or a PNG.

    :func:`normalize_attribution` followed by :func:`apply_colormap`: diverging colours for
    ``sign="all"``, sequential for the others.

    Args:
        attributions: (N, C, H, W), (N, H, W) or (H, W).
        sign, clip_percentile: as in :func:`normalize_attribution`.
        size: optional (H, W) to resize to (bilinear), e.g. a layer attribution to the input size.

    Returns:
        (N, 3, H, W) float32 in [0, 1].
    """
    maps = normalize_attribution(attributions, sign=sign, clip_percentile=clip_percentile)
    if size is not None:
        maps = _resize(maps.unsqueeze(1), size).squeeze(1)
    return apply_colormap(maps, "diverging" if sign == "all" else "sequential")


def _resize(images: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    size = (int(size[0]), int(size[1]))
    if tuple(images.shape[-2:]) == size:
        return images
    return F.interpolate(images, size=size, mode="bilinear", align_corners=False)


def _image_to_rgb(image: torch.Tensor, rescale: Optional[bool] = None) -> torch.Tensor:
    """(N, 1|3, H, W), (N, H, W) or (H, W) -> (N, 3, H, W) float in [0, 1]."""
    if not isinstance(image, torch.Tensor):
        image = torch.as_tensor(image)
    image = image.detach().float()
    if image.dim() == 2:
        image = image.unsqueeze(0).unsqueeze(0)
    elif image.dim() == 3:
        image = image.unsqueeze(1)
    if image.dim() != 4 or image.shape[1] not in (1, 3):
        raise ValueError(
            f"`image` must be (N, 1 or 3, H, W), (N, H, W) or (H, W), got shape {tuple(image.shape)}"
        )
    if rescale is None:
        rescale = bool(image.numel()) and (float(image.min()) < 0.0 or float(image.max()) > 1.0)
    if rescale:
        flat = image.flatten(1)
        low = flat.min(dim=1).values.view(-1, 1, 1, 1)
        high = flat.max(dim=1).values.view(-1, 1, 1, 1)
        image = (image - low) / (high - low).clamp(min=1e-12)
    image = image.clamp(0.0, 1.0)
    if image.shape[1] == 1:
        image = image.expand(-1, 3, -1, -1)
    return image


def overlay(
    image: torch.Tensor,
    heatmap_rgb: torch.Tensor,
    alpha: float = 0.5,
    rescale: Optional[bool] = None,
    weights: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Blend RGB heatmaps over images: ``(1 - a) * image + a * heatmap``, ``a = alpha * weights``.

    Args:
        image: (N, 1 or 3, H, W), (N, H, W) or (H, W). Grey images are repeated to RGB.
        heatmap_rgb: (N, 3, h, w) in [0, 1], e.g. from :func:`attribution_to_rgb`; resized
            (bilinear) to the image's size when it differs.
        alpha: heatmap weight in [0, 1].
        rescale: min-max rescale each image to [0, 1] first; ``None`` (default) does it only when
            the values leave [0, 1] (e.g. a mean/std-normalised input).
        weights: optional per-pixel weights (N, h, w) in [0, 1], e.g. the magnitude
            ``normalize_attribution(a, sign).abs()``, so that pixels without attribution show the
            plain image; resized like the heatmap. ``None``: 1 everywhere.

    Returns:
        (N, 3, H, W) float32 in [0, 1].
    """
    if not 0.0 <= float(alpha) <= 1.0:
        raise ValueError(f"`alpha` must be in [0, 1], got {alpha}")
    base = _image_to_rgb(image, rescale)
    if not isinstance(heatmap_rgb, torch.Tensor) or heatmap_rgb.dim() != 4:
        raise ValueError("`heatmap_rgb` must be a (N, 3, H, W) tensor")
    if heatmap_rgb.shape[1] != 3:
        raise ValueError(
            f"`heatmap_rgb` must have 3 channels, got shape {tuple(heatmap_rgb.shape)}"
        )
    if heatmap_rgb.shape[0] != base.shape[0]:
        raise ValueError(
            f"`image` has {base.shape[0]} samples but `heatmap_rgb` has {heatmap_rgb.shape[0]}"
        )
    heat = _resize(heatmap_rgb.detach().float().to(base.device), base.shape[-2:])
    blend: Union[float, torch.Tensor] = float(alpha)
    if weights is not None:
        w = _as_batch_of_maps(torch.as_tensor(weights), "weights").detach().float()
        if w.shape[0] != base.shape[0]:
            raise ValueError(f"`image` has {base.shape[0]} samples but `weights` has {w.shape[0]}")
        w = _resize(w.to(base.device).unsqueeze(1), base.shape[-2:]).clamp(0.0, 1.0)
        blend = alpha * w
    return ((1.0 - blend) * base + blend * heat).clamp(0.0, 1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Float images in [0, 1] -> uint8 in [0, 255] (e.g. for ``torchvision.io.write_png``)."""
    return (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)


def enlarge(images: torch.Tensor, min_size: int) -> torch.Tensor:
    """Enlarge (C, H, W) or (N, C, H, W) images by the smallest integer factor (nearest
    neighbour) that makes the short side at least ``min_size``; larger ones are returned as is.

    Small inputs such as 8×8 digits stay crisp, pixel for pixel, in image viewers.
    """
    short = min(images.shape[-2:])
    if short >= min_size:
        return images
    factor = -(-min_size // short)
    batch = images if images.dim() == 4 else images.unsqueeze(0)
    out = F.interpolate(batch, scale_factor=factor, mode="nearest")
    return out if images.dim() == 4 else out[0]


# --------------------------------------------------------------------------------------------
# matplotlib figures
# --------------------------------------------------------------------------------------------


def _require_matplotlib() -> Any:
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "foxcem's figures need matplotlib, which is not installed: pip install 'foxcem[demo]'"
        ) from exc
    return Figure


TensorOrMap = Union[torch.Tensor, Mapping[str, torch.Tensor], None]


def _as_named(value: TensorOrMap, default: str) -> dict[str, torch.Tensor]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): torch.as_tensor(v).detach().cpu() for k, v in value.items()}
    return {default: torch.as_tensor(value).detach().cpu()}


def _predict(model: Optional[Callable[..., Any]], x: torch.Tensor, device: Any) -> Optional[list]:
    if model is None:
        return None
    with torch.no_grad():
        scores = model(x.to(device))
    return [int(v) for v in torch.as_tensor(scores).argmax(dim=1).cpu()]


def _model_device(model: Any) -> torch.device:
    """Where to run ``model``: its parameters' or buffers' device; the CPU for a stateless one."""
    return model_device(model) or torch.device("cpu")


def _class_name(index: int, class_names: Optional[Sequence[str]]) -> str:
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)


def _show_image(ax: Any, image: torch.Tensor, value_range: tuple[float, float]) -> None:
    """Draw one (C, H, W) image: grey for one channel, RGB for three."""
    low, high = value_range
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    else:
        scaled = ((image - low) / max(high - low, 1e-12)).clamp(0, 1)
        ax.imshow(scaled.permute(1, 2, 0).numpy(), interpolation="nearest")


def _show_heatmap(ax: Any, attribution: torch.Tensor, sign: str, clip_percentile: float) -> Any:
    heat = normalize_attribution(
        attribution.unsqueeze(0), sign=sign, clip_percentile=clip_percentile
    )
    kind = "diverging" if sign == "all" else "sequential"
    low = -1.0 if sign == "all" else 0.0
    return ax.imshow(
        heat[0].numpy(), cmap=_MPL_CMAPS[kind], vmin=low, vmax=1.0, interpolation="nearest"
    )


def _infer_range(
    images: torch.Tensor, value_range: Optional[Sequence[float]]
) -> tuple[float, float]:
    if value_range is not None:
        return float(value_range[0]), float(value_range[1])
    low, high = float(images.min()), float(images.max())
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    return low, high


def _four_d(images: Any, name: str) -> torch.Tensor:
    images = torch.as_tensor(images).detach().cpu().float()
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ValueError(f"`{name}` must be (N, C, H, W), got shape {tuple(images.shape)}")
    return images


def _panel_figure(
    figure_cls: Any, rows: int, columns: int, panel_size: float, header: float
) -> tuple[Figure, Any]:
    """A ``figure_cls`` figure of ``rows`` × ``columns`` panels of ``panel_size`` inches,
    ``header`` inches taller for the title; returns it with its (rows, columns) array of axes."""
    fig = figure_cls(
        figsize=(panel_size * columns, panel_size * rows + header),
        layout="constrained",
    )
    return fig, fig.subplots(rows, columns, squeeze=False)


def _finish_figure(fig: Figure, title: Optional[str]) -> Figure:
    """Hide every panel's ticks and add the figure title."""
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _show_signed(ax: Any, delta: torch.Tensor, bound: float) -> None:
    """Draw a one-channel perturbation (1, H, W) blue (negative) to red (positive) in
    [-bound, bound]."""
    ax.imshow(delta[0].numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")


def plot_explanation_grid(
    images: torch.Tensor,
    attributions: Optional[Mapping[str, torch.Tensor]] = None,
    *,
    pp: TensorOrMap = None,
    pn: TensorOrMap = None,
    model: Optional[Callable[..., Any]] = None,
    targets: Optional[Sequence[int]] = None,
    labels: Optional[Sequence[int]] = None,
    class_names: Optional[Sequence[str]] = None,
    sign: Union[str, Mapping[str, str]] = "absolute",
    clip_percentile: float = 99.0,
    value_range: Optional[Sequence[float]] = None,
    stretch_pp: bool = True,
    panel_size: float = 1.7,
    title: Optional[str] = None,
) -> Figure:
    """A grid with one row per image: the input, each attribution heatmap, each PP, each input+PN.

    Every panel is titled with its method and the model's prediction: for the input and the
    attribution heatmaps the explained class, for a PP the class the model gives the PP alone,
    for a PN the class of input+PN (``3→8``: the new class). Predictions need ``model``.

    Args:
        images: (N, C, H, W) inputs (C = 1 or 3).
        attributions: method label -> attributions (N, ...) (input-shaped or a layer's shape;
            channels are summed, see :func:`normalize_attribution`).
        pp: pertinent positives (N, C, H, W), or label -> tensor for several.
        pn: pertinent-negative perturbations δ (N, C, H, W) (input+δ is drawn), or label -> tensor.
        model: maps images to class scores (N, classes); used for the titles' predictions.
        targets: the class each attribution explains (default: the model's prediction).
        labels: true classes, added to the input panel's title.
        class_names: names for class indices.
        sign: heatmap sign (see :func:`normalize_attribution`), one for all or label -> sign.
        clip_percentile: percentile clipping of the heatmaps.
        value_range: display range of the images (default [0, 1], or the data's min/max).
        stretch_pp: draw each PP from the range's low end to its own maximum (a PP keeps a
            faint part of the input, which is hard to see on the input's scale).
        panel_size: inches per panel.
        title: figure title.

    Returns:
        A :class:`matplotlib.figure.Figure` (save it with ``fig.savefig(path)``).
    """
    Figure = _require_matplotlib()
    images = _four_d(images, "images")
    attrs = {k: v.detach().cpu().float() for k, v in (attributions or {}).items()}
    pps, pns = _as_named(pp, "CEM PP"), _as_named(pn, "CEM PN")
    n = images.shape[0]
    for label, tensor in {**attrs, **pps, **pns}.items():
        if tensor.shape[0] != n:
            raise ValueError(f"{label!r} has {tensor.shape[0]} samples, the images {n}")
    device = _model_device(model)
    input_pred = _predict(model, images, device)
    pp_images = {k: _four_d(v, k) for k, v in pps.items()}
    pp_pred = {k: _predict(model, v, device) for k, v in pp_images.items()}
    pn_images = {k: images + _four_d(v, k) for k, v in pns.items()}
    pn_pred = {k: _predict(model, v, device) for k, v in pn_images.items()}
    explained = list(targets) if targets is not None else input_pred
    vrange = _infer_range(images, value_range)

    columns = 1 + len(attrs) + len(pps) + len(pns)
    fig, axes = _panel_figure(Figure, n, columns, panel_size, 0.4 if title else 0.0)
    name = lambda i: _class_name(i, class_names)  # noqa: E731
    for row in range(n):
        col = 0
        ax = axes[row][col]
        _show_image(ax, images[row], vrange)
        parts = ["input"]
        if input_pred is not None:
            parts.append(f"pred {name(input_pred[row])}")
        if labels is not None:
            parts.append(f"true {name(int(labels[row]))}")
        ax.set_title(" · ".join(parts), fontsize=8)
        for label, tensor in attrs.items():
            col += 1
            method_sign = sign.get(label, "absolute") if isinstance(sign, Mapping) else sign
            _show_heatmap(axes[row][col], tensor[row], method_sign, clip_percentile)
            suffix = f" · class {name(explained[row])}" if explained is not None else ""
            axes[row][col].set_title(f"{label}{suffix}", fontsize=8)
        for label, kept_all in pp_images.items():
            col += 1
            kept = kept_all[row]
            top = float(kept.max())
            if stretch_pp and top > vrange[0]:
                _show_image(axes[row][col], kept, (vrange[0], top))
            else:
                _show_image(axes[row][col], kept, vrange)
            pred = pp_pred[label]
            suffix = f" · pred {name(pred[row])}" if pred is not None else ""
            axes[row][col].set_title(f"{label}{suffix}", fontsize=8)
        for label, combined in pn_images.items():
            col += 1
            _show_image(axes[row][col], combined[row], vrange)
            pred = pn_pred[label]
            if pred is not None and input_pred is not None:
                suffix = f" · {name(input_pred[row])}→{name(pred[row])}"
            elif pred is not None:
                suffix = f" · pred {name(pred[row])}"
            else:
                suffix = ""
            axes[row][col].set_title(f"x+{label}{suffix}", fontsize=8)
    return _finish_figure(fig, title)


def _savepoint_tensor(value: Any, index: int) -> torch.Tensor:
    tensor = torch.as_tensor(value).detach().cpu().float()
    if tensor.dim() == 4:
        tensor = tensor[index]
    elif tensor.dim() == 2:
        tensor = tensor.unsqueeze(0)
    if tensor.dim() != 3:
        raise ValueError(
            f"a savepoint must be (N, C, H, W), (C, H, W) or (H, W), got shape {tuple(tensor.shape)}"
        )
    return tensor


def plot_savepoints(
    savepoints: Mapping[str, Any],
    *,
    image: Optional[torch.Tensor] = None,
    model: Optional[Callable[..., Any]] = None,
    mode: str = "PN",
    index: int = 0,
    class_names: Optional[Sequence[str]] = None,
    value_range: Optional[Sequence[float]] = None,
    panel_size: float = 1.8,
    title: Optional[str] = None,
) -> Figure:
    """A strip of CEM optimisation savepoints (``"Iteration: k"``), as in the MAX tutorials.

    Args:
        savepoints: iteration (a string) -> δ, as returned by the explanation generator's ``run``;
            each δ is (N, C, H, W) (sample ``index`` is drawn), (C, H, W) or (H, W).
        image: the explained input (C, H, W) or (N, C, H, W); for ``mode="PN"`` a last panel
            shows input + final δ, and with ``model`` each title gets the prediction of input + δ.
        model: maps images to class scores; adds ``pred k`` to the titles (of δ for PP, of
            input+δ for PN).
        mode: ``"PN"`` or ``"PP"``.
        index: which sample of a batched savepoint to draw.
        class_names: names for class indices.
        value_range: display range (default [0, 1] or the data's min/max). A PN δ with negative
            entries is drawn with a diverging colormap centred on zero.
        panel_size: inches per panel.
        title: figure title.

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    Figure = _require_matplotlib()
    if mode not in ("PN", "PP"):
        raise ValueError(f"`mode` must be 'PN' or 'PP', got {mode!r}")
    if not savepoints:
        raise ValueError("`savepoints` is empty")
    deltas = {str(k): _savepoint_tensor(v, index) for k, v in savepoints.items()}
    base = None
    if image is not None:
        base = _four_d(image, "image")
        base = base[index if base.shape[0] > 1 else 0]
    reference = base if base is not None else next(iter(deltas.values()))
    vrange = _infer_range(reference, value_range)
    device = _model_device(model)
    show_sum = mode == "PN" and base is not None
    columns = len(deltas) + (1 if show_sum else 0)
    fig, grid = _panel_figure(Figure, 1, columns, panel_size, 0.6 if title else 0.35)
    axes = grid[0]
    # One colour scale for the whole strip; a signed PN δ is drawn blue (removed) to red (added).
    signed = mode == "PN" and any(float(d.min()) < 0.0 for d in deltas.values())
    bound = max(max(float(d.abs().max()) for d in deltas.values()), 1e-12)
    for ax, (iteration, delta) in zip(axes, deltas.items()):
        if signed and delta.shape[0] == 1:
            _show_signed(ax, delta, bound)
        else:
            _show_image(ax, delta, vrange)
        text = f"Iteration: {iteration}"
        if model is not None:
            probe = delta if mode == "PP" or base is None else base + delta
            pred = _predict(model, probe.unsqueeze(0), device)
            if pred is not None:
                text += f"\npred {_class_name(pred[0], class_names)}"
        ax.set_title(text, fontsize=8)
    if show_sum:
        last = list(deltas.values())[-1]
        ax = axes[-1]
        _show_image(ax, base + last, vrange)
        text = "Orig + Perturbation"
        if model is not None:
            before = _predict(model, base.unsqueeze(0), device)
            after = _predict(model, (base + last).unsqueeze(0), device)
            if before is not None and after is not None:
                text += (
                    f"\n{_class_name(before[0], class_names)}→{_class_name(after[0], class_names)}"
                )
        ax.set_title(text, fontsize=8)
    return _finish_figure(fig, title)


def plot_pp_pn(
    images: torch.Tensor,
    pp: Optional[torch.Tensor] = None,
    pn: Optional[torch.Tensor] = None,
    *,
    model: Optional[Callable[..., Any]] = None,
    class_names: Optional[Sequence[str]] = None,
    value_range: Optional[Sequence[float]] = None,
    panel_size: float = 1.8,
    title: Optional[str] = None,
) -> Figure:
    """PP and PN panels, one row per image: input, PP, PN perturbation δ, input+δ.

    Args:
        images: (N, C, H, W) inputs.
        pp: pertinent positives (N, C, H, W) (the kept part of each input), or ``None``.
        pn: pertinent-negative perturbations δ (N, C, H, W), or ``None``.
        model: maps images to class scores; adds the predictions to the titles.
        class_names: names for class indices.
        value_range: display range of the images (default [0, 1] or the data's min/max).
        panel_size: inches per panel.
        title: figure title.

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    Figure = _require_matplotlib()
    images = _four_d(images, "images")
    if pp is None and pn is None:
        raise ValueError("give `pp`, `pn` or both")
    pp_t = _four_d(pp, "pp") if pp is not None else None
    pn_t = _four_d(pn, "pn") if pn is not None else None
    n = images.shape[0]
    vrange = _infer_range(images, value_range)
    device = _model_device(model)
    pred_x = _predict(model, images, device)
    pred_pp = _predict(model, pp_t, device) if pp_t is not None else None
    pred_pn = _predict(model, images + pn_t, device) if pn_t is not None else None
    columns = 1 + (1 if pp_t is not None else 0) + (2 if pn_t is not None else 0)
    fig, axes = _panel_figure(Figure, n, columns, panel_size, 0.4 if title else 0.0)
    name = lambda i: _class_name(i, class_names)  # noqa: E731
    for row in range(n):
        col = 0
        _show_image(axes[row][col], images[row], vrange)
        axes[row][col].set_title(
            "input" + (f" · pred {name(pred_x[row])}" if pred_x is not None else ""), fontsize=8
        )
        if pp_t is not None:
            col += 1
            _show_image(axes[row][col], pp_t[row], vrange)
            axes[row][col].set_title(
                "PP" + (f" · pred {name(pred_pp[row])}" if pred_pp is not None else ""), fontsize=8
            )
        if pn_t is not None:
            col += 1
            delta = pn_t[row]
            bound = max(float(delta.abs().max()), 1e-12)
            if delta.shape[0] == 1:
                _show_signed(axes[row][col], delta, bound)
            else:
                _show_image(axes[row][col], delta.abs(), (0.0, bound))
            axes[row][col].set_title("PN δ", fontsize=8)
            col += 1
            _show_image(axes[row][col], images[row] + delta, vrange)
            change = ""
            if pred_pn is not None and pred_x is not None:
                change = f" · {name(pred_x[row])}→{name(pred_pn[row])}"
            axes[row][col].set_title(f"x+PN{change}", fontsize=8)
    return _finish_figure(fig, title)
