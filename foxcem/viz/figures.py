"""The pieces every matplotlib figure of foxcem shares (matplotlib is imported only when
a figure is drawn; figures are built without pyplot, so no global backend state changes)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from foxcem.core.checks import model_device
from foxcem.viz.images import normalize_attribution

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = [
    "MPL_CMAPS",
    "add_colorbar",
    "TensorOrMap",
    "as_image_batch",
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
    if model is None:
        return None
    with torch.no_grad():
        scores = model(x.to(device))
    return [int(v) for v in torch.as_tensor(scores).argmax(dim=1).cpu()]


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
    """Draw an attribution normalised to [0, 1] (or [−1, 1] for ``sign="all"``) with a
    sign-aware colormap: sequential from 0, or diverging centred on 0. Returns the image."""
    heat = normalize_attribution(
        attribution.unsqueeze(0), sign=sign, clip_percentile=clip_percentile
    )
    kind = "diverging" if sign == "all" else "sequential"
    low = -1.0 if sign == "all" else 0.0
    return ax.imshow(
        heat[0].numpy(),
        cmap=MPL_CMAPS[kind],
        vmin=low,
        vmax=1.0,
        alpha=alpha,
        interpolation="nearest",
    )


def add_colorbar(fig: Any, ax: Any, mappable: Any, sign: str) -> Any:
    """A slim colorbar beside ``ax`` that says what the colours mean for ``sign``."""
    bar = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.02)
    if sign == "all":
        bar.set_ticks([-1.0, 0.0, 1.0], labels=["−", "0", "+"])
    else:
        bar.set_ticks([0.0, 1.0], labels=["0", "max"])
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


def as_image_batch(images: Any, name: str) -> torch.Tensor:
    images = torch.as_tensor(images).detach().cpu().float()
    if images.dim() == 3:
        images = images.unsqueeze(0)
    if images.dim() != 4:
        raise ValueError(f"`{name}` must be (N, C, H, W), got shape {tuple(images.shape)}")
    return images


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
