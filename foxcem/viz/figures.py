"""The pieces every matplotlib figure of foxcem shares (matplotlib is imported only when
a figure is drawn; figures are built without pyplot, so no global backend state changes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from foxcem.core.checks import check_scores, model_device
from foxcem.core.model_state import preserve_model_state
from foxcem.viz.images import attribution_scale

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "MPL_CMAPS",
    "add_colorbar",
    "TensorOrMap",
    "as_image_batch",
    "check_flags",
    "show_added",
    "as_named",
    "class_name",
    "finish_figure",
    "infer_range",
    "panel_figure",
    "predict_classes",
    "require_matplotlib",
    "run_device",
    "show_heatmap",
    "show_image",
    "show_missing",
    "show_signed",
]

#: matplotlib's names of the colormaps that :func:`foxcem.viz.apply_colormap` imitates.
MPL_CMAPS = {"sequential": "inferno", "diverging": "RdBu_r"}
#: The colours of positive and negative attribution in token and feature figures (RGB, 0–255).
POSITIVE, NEGATIVE = (214, 39, 40), (31, 119, 180)


def require_matplotlib() -> Any:
    """matplotlib's ``Figure`` class; ``ImportError`` with the install command without it."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise ImportError(
            "foxcem's figures need matplotlib, which is not installed: pip install 'foxcem[demo]'"
        ) from exc
    return Figure


TensorOrMap = Union[torch.Tensor, Mapping[str, torch.Tensor], None]


def as_named(value: TensorOrMap, default: str) -> dict[str, torch.Tensor]:
    if value is None:
        return {}
    if isinstance(value, Mapping):
        return {str(k): torch.as_tensor(v).detach().cpu() for k, v in value.items()}
    return {default: torch.as_tensor(value).detach().cpu()}


def predict_classes(
    model: Optional[Callable[..., Any]], x: torch.Tensor, device: Any
) -> Optional[list]:
    """The classes ``model`` predicts for ``x`` — run under the model-state guard, as explainers
    run it (eval mode: no BatchNorm update, no Dropout draw; the model left as it was)."""
    if model is None:
        return None
    inputs = x.to(device)
    with preserve_model_state(model), torch.no_grad():
        scores = check_scores(model(inputs), inputs.shape[0], "model's output")
    return [int(v) for v in scores.argmax(dim=1).cpu()]


def run_device(model: Any) -> torch.device:
    """Where to run ``model``: its parameters' or buffers' device; the CPU for a stateless one."""
    return model_device(model) or torch.device("cpu")


def class_name(index: int, class_names: Optional[Sequence[str]]) -> str:
    if class_names is not None and 0 <= index < len(class_names):
        return str(class_names[index])
    return str(index)


def show_image(ax: Any, image: torch.Tensor, value_range: tuple[float, float]) -> None:
    """Draw one (C, H, W) image: grey for one channel, RGB for three."""
    low, high = value_range
    if image.shape[0] == 1:
        ax.imshow(image[0].numpy(), cmap="gray", vmin=low, vmax=high, interpolation="nearest")
    else:
        scaled = ((image - low) / max(high - low, 1e-12)).clamp(0, 1)
        ax.imshow(scaled.permute(1, 2, 0).numpy(), interpolation="nearest")


def show_missing(
    ax: Any, image: torch.Tensor, value_range: tuple[float, float], label: str
) -> None:
    """A panel for an explanation that was not found: the input, dimmed, and a red title —
    never a near-zero δ stretched to full contrast."""
    low, high = value_range
    show_image(ax, low + 0.25 * (image - low), value_range)
    ax.set_title(label, fontsize=8, color="tab:red")


def show_heatmap(
    ax: Any, attribution: torch.Tensor, sign: str, clip_percentile: float, alpha: float = 1.0
) -> Any:
    """Draw an attribution's channel sum in its own units with a sign-aware colormap:
    sequential from 0, or diverging centred on 0 for ``sign="all"``; the colours saturate at
    the ``clip_percentile``-th percentile of the magnitudes. Returns the image (for a colorbar
    with the attribution's values)."""
    values, scales = attribution_scale(attribution.unsqueeze(0), sign, clip_percentile)
    scale = float(scales[0]) if float(scales[0]) > 0 else 1.0
    kind = "diverging" if sign == "all" else "sequential"
    return ax.imshow(
        values[0].numpy(),
        cmap=MPL_CMAPS[kind],
        vmin=-scale if sign == "all" else 0.0,
        vmax=scale,
        alpha=alpha,
        interpolation="nearest",
    )


#: What a colorbar's values are, per ``sign``.
COLORBAR_LABELS = {
    "all": "attribution",
    "absolute": "|attribution|",
    "positive": "positive attribution",
    "negative": "|negative attribution|",
}


def add_colorbar(fig: Any, ax: Any, mappable: Any, sign: str) -> Any:
    """A slim colorbar beside ``ax`` with the attribution's values (channels summed; the top
    tick is where the colours saturate)."""
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    low, high = mappable.get_clim()
    ticks = [low, 0.0, high] if sign == "all" else [0.0, 0.5 * high, high]
    bar.set_ticks(ticks, labels=[f"{t:.2g}" for t in ticks])
    bar.set_label(COLORBAR_LABELS[sign], fontsize=6)
    bar.ax.tick_params(labelsize=6)
    return bar


def infer_range(
    images: torch.Tensor, value_range: Optional[Sequence[float]]
) -> tuple[float, float]:
    if value_range is not None:
        return float(value_range[0]), float(value_range[1])
    low, high = float(images.min()), float(images.max())
    if low >= 0.0 and high <= 1.0:
        return 0.0, 1.0
    return low, high


def as_image_batch(images: Any, name: str, count: Optional[int] = None) -> torch.Tensor:
    """``images`` as a float (N, C, H, W) CPU batch that can be drawn: N ≥ 1 (``count`` when
    given), 1 or 3 channels.

    Raises:
        ValueError: naming ``name``, for anything else.
    """
    if images is None or isinstance(images, (str, bytes)):
        raise TypeError(f"`{name}` must be a tensor (N, C, H, W), got {type(images).__name__}")
    try:
        images = torch.as_tensor(images).detach().cpu().float()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(
            f"`{name}` must be a tensor (N, C, H, W), got {type(images).__name__}"
        ) from None
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ValueError(f"`{name}` must be (N, C, H, W), got shape {tuple(images.shape)}")
    if images.shape[0] == 0 or images[0].numel() == 0:
        raise ValueError(f"`{name}` must hold at least one image, got shape {tuple(images.shape)}")
    if images.shape[1] not in (1, 3):
        raise ValueError(
            f"`{name}` must have 1 (grey) or 3 (RGB) channels to be drawn, got "
            f"{images.shape[1]}; draw one channel or a 3-channel view of it"
        )
    if count is not None and images.shape[0] != count:
        raise ValueError(f"`{name}` holds {images.shape[0]} images, the inputs {count}")
    return images


def check_flags(flags: Optional[Sequence[Any]], name: str, count: int) -> Optional[list[bool]]:
    """Per-sample flags (``meta_data["found"]``): ``count`` booleans, or ``None``."""
    if flags is None:
        return None
    values = flags.tolist() if isinstance(flags, torch.Tensor) else list(flags)
    if len(values) != count:
        raise ValueError(f"`{name}` must hold one flag per image ({count}), got {len(values)}")
    return [bool(v) for v in values]


def show_added(
    ax: Any, image: torch.Tensor, delta: torch.Tensor, value_range: tuple[float, float]
) -> None:
    """Draw ``image`` (C, H, W) in grey with what ``delta`` adds in red and what it removes in
    blue, the colour's strength following ``|δ|`` (channels summed): a pertinent negative's ink is
    seen at a glance, even where the input is bright."""
    low, high = value_range
    grey = ((image.mean(dim=0) - low) / max(high - low, 1e-12)).clamp(0, 1)
    change = delta.sum(dim=0)
    strength = (change.abs() / max(float(change.abs().max()), 1e-12)).clamp(0, 1)
    rgb = grey.unsqueeze(-1).expand(-1, -1, 3).clone()
    colour = torch.where(
        (change >= 0).unsqueeze(-1),
        torch.tensor([0.93, 0.11, 0.14]),
        torch.tensor([0.13, 0.4, 0.9]),
    )
    alpha = (0.35 + 0.65 * strength).unsqueeze(-1) * (strength > 0).unsqueeze(-1)
    ax.imshow((rgb * (1 - alpha) + colour * alpha).numpy(), interpolation="nearest")


def panel_figure(
    figure_cls: Any, rows: int, columns: int, panel_size: float, header: float
) -> tuple[Figure, Any]:
    """A ``figure_cls`` figure of ``rows`` × ``columns`` panels of ``panel_size`` inches,
    ``header`` inches taller for the title; returns it with its (rows, columns) array of axes."""
    fig = figure_cls(
        figsize=(panel_size * columns, panel_size * rows + header),
        layout="constrained",
    )
    return fig, fig.subplots(rows, columns, squeeze=False)


def finish_figure(fig: Figure, title: Optional[str]) -> Figure:
    """Hide every panel's ticks and add the figure title."""
    for ax in fig.axes:
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def show_signed(ax: Any, delta: torch.Tensor, bound: float) -> None:
    """Draw a one-channel perturbation (1, H, W) blue (negative) to red (positive) in
    [-bound, bound]."""
    ax.imshow(delta[0].numpy(), cmap="RdBu_r", vmin=-bound, vmax=bound, interpolation="nearest")
