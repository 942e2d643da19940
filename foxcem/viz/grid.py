"""The explanation grid: one row per image, one column per method."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional, Union

import torch

from foxcem.viz.attr_image import unnormalize
from foxcem.viz.figures import (
    TensorOrMap,
    add_colorbar,
    as_image_batch,
    as_named,
    check_flags,
    class_name,
    finish_figure,
    infer_range,
    panel_figure,
    predict_classes,
    require_matplotlib,
    run_device,
    show_added,
    show_heatmap,
    show_image,
    show_missing,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_explanation_grid"]


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
    found: Optional[Mapping[str, Sequence[bool]]] = None,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    colorbar: bool = True,
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
        found: CEM label -> per-sample flags (``meta_data["found"]``): a sample without an
            explanation is drawn as such (its input dimmed, "no PP/PN found"), never stretched.
        mean, std: per-channel normalisation of ``images`` to undo for display.
        colorbar: a colorbar beside each heatmap (sign-aware: 0…max, or −…0…+).
        panel_size: inches per panel.
        title: figure title.

    Returns:
        A :class:`matplotlib.figure.Figure` (save it with ``fig.savefig(path)``).
    """
    Figure = require_matplotlib()
    images = as_image_batch(images, "images")
    display = torch.stack([unnormalize(image, mean, std) for image in images])
    attrs = {k: v.detach().cpu().float() for k, v in (attributions or {}).items()}
    pps, pns = as_named(pp, "CEM PP"), as_named(pn, "CEM PN")
    n = images.shape[0]
    found = {k: check_flags(flags, f"found[{k!r}]", n) for k, flags in (found or {}).items()}
    for label, tensor in {**attrs, **pps, **pns}.items():
        if tensor.shape[0] != n:
            raise ValueError(f"{label!r} has {tensor.shape[0]} samples, the images {n}")
    device = run_device(model)
    input_pred = predict_classes(model, images, device)
    pp_images = {k: as_image_batch(v, k) for k, v in pps.items()}
    pp_pred = {k: predict_classes(model, v, device) for k, v in pp_images.items()}
    pn_images = {k: images + as_image_batch(v, k) for k, v in pns.items()}
    pn_pred = {k: predict_classes(model, v, device) for k, v in pn_images.items()}
    explained = list(targets) if targets is not None else input_pred
    vrange = infer_range(display, value_range)

    columns = 1 + len(attrs) + len(pps) + len(pns)
    fig, axes = panel_figure(Figure, n, columns, panel_size, 0.4 if title else 0.0)
    name = lambda i: class_name(i, class_names)  # noqa: E731
    for row in range(n):
        col = 0
        ax = axes[row][col]
        show_image(ax, display[row], vrange)
        parts = ["input"]
        if input_pred is not None:
            parts.append(f"pred {name(input_pred[row])}")
        if labels is not None:
            parts.append(f"true {name(int(labels[row]))}")
        ax.set_title(" · ".join(parts), fontsize=8)
        for label, tensor in attrs.items():
            col += 1
            method_sign = sign.get(label, "absolute") if isinstance(sign, Mapping) else sign
            image = show_heatmap(axes[row][col], tensor[row], method_sign, clip_percentile)
            if colorbar:
                add_colorbar(fig, axes[row][col], image, method_sign)
            suffix = f" · class {name(explained[row])}" if explained is not None else ""
            axes[row][col].set_title(f"{label}{suffix}", fontsize=8)
        for label, kept_all in pp_images.items():
            col += 1
            if not found.get(label, [True] * n)[row]:
                show_missing(axes[row][col], display[row], vrange, f"{label}: no PP found")
                continue
            kept = kept_all[row]
            top = float(kept.max())
            if stretch_pp and top > vrange[0]:
                show_image(axes[row][col], kept, (vrange[0], top))
            else:
                show_image(axes[row][col], kept, vrange)
            pred = pp_pred[label]
            suffix = f" · pred {name(pred[row])}" if pred is not None else ""
            axes[row][col].set_title(f"{label}{suffix}", fontsize=8)
        for label, combined in pn_images.items():
            col += 1
            if not found.get(label, [True] * n)[row]:
                show_missing(axes[row][col], display[row], vrange, f"{label}: no PN found")
                continue
            shown_pn = unnormalize(combined[row], mean, std)
            show_added(axes[row][col], display[row], shown_pn - display[row], vrange)
            pred = pn_pred[label]
            if pred is not None and input_pred is not None:
                suffix = f" · {name(input_pred[row])}→{name(pred[row])}"
            elif pred is not None:
                suffix = f" · pred {name(pred[row])}"
            else:
                suffix = ""
            axes[row][col].set_title(f"x+{label}{suffix}", fontsize=8)
    return finish_figure(fig, title)
