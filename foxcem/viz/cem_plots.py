"""Figures of contrastive explanations: savepoints of a CEM run, PP and PN side by side."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Callable, Optional

import torch

from foxcem.viz.attr_image import unnormalize
from foxcem.viz.figures import (
    as_image_batch,
    check_flags,
    class_name,
    finish_figure,
    infer_range,
    panel_figure,
    predict_classes,
    require_matplotlib,
    run_device,
    show_added,
    show_image,
    show_missing,
    show_signed,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

__all__ = ["plot_savepoints", "plot_pp_pn"]


def _savepoint_tensor(key: str, value: Any, index: int) -> torch.Tensor:
    try:
        tensor = torch.as_tensor(value).detach().cpu().float()
    except (TypeError, ValueError, RuntimeError):
        raise TypeError(f"savepoint {key!r} must be a tensor, got {type(value).__name__}") from None
    if tensor.dim() == 4:
        if not 0 <= index < tensor.shape[0]:
            raise ValueError(
                f"`index` {index} is out of range: savepoint {key!r} holds {tensor.shape[0]} "
                "samples"
            )
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
        image: the explained input (C, H, W) or (N, C, H, W); for ``mode="PN"`` every panel
            shows the input in grey with what δ adds in red (removes: blue), a last panel the
            input + final δ as the model sees it, and with ``model`` each title gets the
            prediction of input + δ.
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
    Figure = require_matplotlib()
    if mode not in ("PN", "PP"):
        raise ValueError(f"`mode` must be 'PN' or 'PP', got {mode!r}")
    if not savepoints:
        raise ValueError("`savepoints` is empty")
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"`index` must be an int, got {type(index).__name__}")
    deltas = {str(k): _savepoint_tensor(str(k), v, index) for k, v in savepoints.items()}
    shapes = {tuple(d.shape) for d in deltas.values()}
    if len(shapes) != 1:
        raise ValueError(f"the savepoints must all have one shape, got {sorted(shapes)}")
    base = None
    if image is not None:
        base = as_image_batch(image, "image")
        if base.shape[0] > 1 and not 0 <= index < base.shape[0]:
            raise ValueError(f"`index` {index} is out of range: `image` holds {base.shape[0]}")
        base = base[index if base.shape[0] > 1 else 0]
        if tuple(base.shape) != shapes.pop():
            raise ValueError(
                f"`image` {tuple(base.shape)} and the savepoints {tuple(deltas[next(iter(deltas))].shape)} "
                "differ in shape"
            )
    reference = base if base is not None else next(iter(deltas.values()))
    vrange = infer_range(reference, value_range)
    device = run_device(model)
    show_sum = mode == "PN" and base is not None
    columns = len(deltas) + (1 if show_sum else 0)
    fig, grid = panel_figure(Figure, 1, columns, panel_size, 0.6 if title else 0.35)
    axes = grid[0]
    # One colour scale for the whole strip; a signed PN δ is drawn blue (removed) to red (added).
    signed = mode == "PN" and any(float(d.min()) < 0.0 for d in deltas.values())
    bound = max(max(float(d.abs().max()) for d in deltas.values()), 1e-12)
    for ax, (iteration, delta) in zip(axes, deltas.items()):
        if show_sum:  # the input in grey, what δ adds in red: the start is the input itself
            assert base is not None
            show_added(ax, base, delta, vrange)
        elif signed and delta.shape[0] == 1:
            show_signed(ax, delta, bound)
        else:
            show_image(ax, delta, vrange)
        if not show_sum and not bool(delta.any()):
            ax.text(0.5, 0.5, "δ = 0", ha="center", va="center", color="0.6", fontsize=8,
                    transform=ax.transAxes)  # fmt: skip
        text = f"Iteration: {iteration}"
        if model is not None:
            probe = delta if mode == "PP" or base is None else base + delta
            pred = predict_classes(model, probe.unsqueeze(0), device)
            if pred is not None:
                text += f"\npred {class_name(pred[0], class_names)}"
        ax.set_title(text, fontsize=8)
    if show_sum:
        last = list(deltas.values())[-1]
        ax = axes[-1]
        show_image(ax, base + last, vrange)  # what the model sees
        text = "Orig + Perturbation"
        if model is not None:
            before = predict_classes(model, base.unsqueeze(0), device)
            after = predict_classes(model, (base + last).unsqueeze(0), device)
            if before is not None and after is not None:
                text += (
                    f"\n{class_name(before[0], class_names)}→{class_name(after[0], class_names)}"
                )
        ax.set_title(text, fontsize=8)
    return finish_figure(fig, title)


def plot_pp_pn(
    images: torch.Tensor,
    pp: Optional[torch.Tensor] = None,
    pn: Optional[torch.Tensor] = None,
    *,
    model: Optional[Callable[..., Any]] = None,
    class_names: Optional[Sequence[str]] = None,
    found_pp: Optional[Sequence[bool]] = None,
    found_pn: Optional[Sequence[bool]] = None,
    no_info_value: float = 0.0,
    mean: Optional[Sequence[float]] = None,
    std: Optional[Sequence[float]] = None,
    show_delta: bool = False,
    value_range: Optional[Sequence[float]] = None,
    panel_size: float = 1.8,
    title: Optional[str] = None,
) -> Figure:
    """Contrastive explanations, one row per image: the input x, the PP (what alone keeps the
    class), x + PN (what, added, changes it) titled with the new class.

    Args:
        images: (N, C, H, W) inputs, as the model sees them.
        pp: pertinent positives δ (N, C, H, W) (the model sees ``no_info_value + δ``), or
            ``None``.
        pn: pertinent-negative perturbations δ (N, C, H, W) (the model sees x + δ), or ``None``.
        model: maps images to class scores; adds the predictions to the titles.
        class_names: names for class indices.
        found_pp, found_pn: per-sample flags (``meta_data["found"]``); a sample without an
            explanation is drawn as such, never as a stretched near-zero δ.
        no_info_value: the value a PP's removed features take (0 for images in [0, 1]).
        mean, std: per-channel normalisation of ``images`` to undo for display.
        show_delta: also draw the PN perturbation δ itself (blue removed, red added).
        value_range: display range of the images (default [0, 1] or the data's min/max).
        panel_size: inches per panel.
        title: figure title.

    Returns:
        A :class:`matplotlib.figure.Figure`.
    """
    Figure = require_matplotlib()
    images = as_image_batch(images, "images")
    if pp is None and pn is None:
        raise ValueError("give `pp`, `pn` or both")
    n = images.shape[0]
    pp_t = as_image_batch(pp, "pp", count=n) + no_info_value if pp is not None else None
    pn_t = as_image_batch(pn, "pn", count=n) if pn is not None else None
    found_pp = check_flags(found_pp, "found_pp", n)
    found_pn = check_flags(found_pn, "found_pn", n)
    shown = lambda v: unnormalize(v, mean, std)  # noqa: E731
    vrange = infer_range(torch.stack([shown(v) for v in images]), value_range)
    device = run_device(model)
    pred_x = predict_classes(model, images, device)
    pred_pp = predict_classes(model, pp_t, device) if pp_t is not None else None
    pred_pn = predict_classes(model, images + pn_t, device) if pn_t is not None else None
    columns = 1 + (pp_t is not None) + (pn_t is not None) * (1 + show_delta)
    fig, axes = panel_figure(Figure, n, columns, panel_size, 0.4 if title else 0.0)
    name = lambda i: class_name(i, class_names)  # noqa: E731
    for row in range(n):
        panels = iter(axes[row])
        ax = next(panels)
        show_image(ax, shown(images[row]), vrange)
        ax.set_title("x" + (f" · class {name(pred_x[row])}" if pred_x else ""), fontsize=8)
        if pp_t is not None:
            ax = next(panels)
            if found_pp is not None and not found_pp[row]:
                show_missing(ax, shown(images[row]), vrange, "no PP found")
            else:
                show_image(ax, shown(pp_t[row]), vrange)
                keeps = f" · class {name(pred_pp[row])}" if pred_pp else ""
                ax.set_title(f"PP{keeps}", fontsize=8)
        if pn_t is not None:
            missing = found_pn is not None and not found_pn[row]
            if show_delta:
                ax = next(panels)
                delta = pn_t[row]
                bound = max(float(delta.abs().max()), 1e-12)
                if missing:
                    show_missing(ax, shown(images[row]), vrange, "no PN found")
                elif delta.shape[0] == 1:
                    show_signed(ax, delta, bound)
                    ax.set_title("PN δ", fontsize=8)
                else:
                    show_image(ax, delta.abs(), (0.0, bound))
                    ax.set_title("PN |δ|", fontsize=8)
            ax = next(panels)
            if missing:
                show_missing(ax, shown(images[row]), vrange, "no PN found")
            else:
                shown_x = shown(images[row])
                show_added(ax, shown_x, shown(images[row] + pn_t[row]) - shown_x, vrange)
                change = ""
                if pred_pn is not None and pred_x is not None:
                    change = f" · {name(pred_x[row])}→{name(pred_pn[row])}"
                ax.set_title(f"x+PN{change}", fontsize=8)
    return finish_figure(fig, title)
