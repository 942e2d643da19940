"""Attributions of table rows as bar charts: one horizontal bar per feature, largest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import torch

from foxcem.viz.figures import NEGATIVE, POSITIVE, require_matplotlib

__all__ = ["plot_feature_attributions"]


def plot_feature_attributions(
    attributions: Any,
    feature_names: Optional[Sequence[str]] = None,
    values: Optional[torch.Tensor] = None,
    top_k: Optional[int] = 15,
    title: Optional[str] = None,
    labels: Optional[Sequence[str]] = None,
) -> Any:
    """A matplotlib figure with one bar chart per row: each feature's attribution (red
    positive, blue negative), the ``top_k`` largest in magnitude, largest on top.

    Args:
        attributions: (F,) or (N, F) attributions of table rows (e.g. Integrated Gradients,
            KernelShap, or a CEM δ).
        feature_names: names of the F features (default ``x0`` …).
        values: the rows themselves (N, F) or (F,), shown beside each name.
        top_k: how many features to show per row (``None``: all).
        title: the figure's title; ``labels``: one title per row (e.g. the predicted class).

    Raises:
        ValueError: shapes or names that do not match.
    """
    figure_cls = require_matplotlib()
    scores = torch.as_tensor(attributions).detach().float().cpu()
    if scores.dim() == 1:
        scores = scores[None]
    if scores.dim() != 2:
        raise ValueError(f"`attributions` must be (F,) or (N, F), got shape {tuple(scores.shape)}")
    n, f = scores.shape
    names = (
        [f"x{i}" for i in range(f)] if feature_names is None else [str(s) for s in feature_names]
    )
    if len(names) != f:
        raise ValueError(f"`feature_names` must name the {f} features, got {len(names)}")
    rows = None
    if values is not None:
        rows = torch.as_tensor(values).detach().float().cpu()
        if rows.numel() != n * f:
            raise ValueError(f"`values` must be the rows (N, F) = ({n}, {f})")
        rows = rows.reshape(n, f)
    if labels is not None and len(labels) != n:
        raise ValueError(f"`labels` must have one entry per row ({n}), got {len(labels)}")
    k = f if top_k is None else max(1, min(int(top_k), f))
    fig = figure_cls(figsize=(6.0 * min(n, 3), 0.28 * k + 1.2), layout="constrained")
    axes = fig.subplots(1, n, squeeze=False)[0]
    for i, ax in enumerate(axes):
        order = scores[i].abs().argsort(descending=True)[:k].flip(0)
        shown = scores[i][order]
        text = [
            names[j] if rows is None else f"{names[j]} = {float(rows[i, j]):.3g}" for j in order
        ]
        colours = [_hex(POSITIVE if v >= 0 else NEGATIVE) for v in shown.tolist()]
        ax.barh(range(k), shown.numpy(), color=colours)
        ax.set_yticks(range(k), text, fontsize=8)
        ax.axvline(0, color="black", linewidth=0.6)
        ax.set_xlabel("attribution", fontsize=8)
        if labels is not None:
            ax.set_title(str(labels[i]), fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#" + "".join(f"{c:02x}" for c in rgb)
