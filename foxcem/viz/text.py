"""Token-level attributions people can read: coloured tokens as HTML (a notebook shows it) and as
a matplotlib figure, one line per sample, in the manner of Captum's ``visualize_text``.

Each token's background is red for positive attribution and blue for negative, its strength the
attribution over the largest magnitude of that sample (or of ``scale``)::

    attributions = explainer.calculate_features(model, token_ids, layer=model.embedding)
    scores = attributions.sum(dim=-1)                      # (N, T): one value per token
    html = text_attribution_html(tokens, scores, labels=["positive", "negative"])
    fig = visualize_text(tokens, scores)
"""

from __future__ import annotations

import html as html_lib
from collections.abc import Sequence
from typing import Any, Optional, Union

import torch

from foxcem.viz.figures import NEGATIVE, POSITIVE, require_matplotlib

__all__ = ["TextAttributionHTML", "token_scores", "text_attribution_html", "visualize_text"]

Tokens = Union[Sequence[str], Sequence[Sequence[str]]]


def token_scores(
    tokens: Tokens, attributions: Any, labels: Optional[Sequence[str]] = None
) -> tuple[list[list[str]], list[torch.Tensor]]:
    """Tokens as a list per sample and their attributions as one (T,) tensor per sample.

    ``attributions`` is (T,) or (N, T), or (N, T, E) per embedding dimension (summed over E).

    Raises:
        TypeError: tokens that are not strings, attributions that are not a tensor or array.
        ValueError: a number of tokens that differs from the attributions' T, or ``labels``
            that are not one per sample.
    """
    if isinstance(tokens, str) or not isinstance(tokens, Sequence) or not tokens:
        raise TypeError("`tokens` must be a list of strings, or one such list per sample")
    rows = [list(tokens)] if isinstance(tokens[0], str) else [list(row) for row in tokens]
    if not all(isinstance(t, str) for row in rows for t in row):
        raise TypeError("`tokens` must hold strings only")
    if not isinstance(attributions, torch.Tensor):
        try:
            attributions = torch.as_tensor(attributions)
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(
                "`attributions` must be a tensor or array (T,), (N, T) or (N, T, E), got "
                f"{type(attributions).__name__}"
            ) from None
    values = attributions.detach().float().cpu()
    if values.dim() == 1:
        values = values[None]
    if values.dim() == 3:
        values = values.sum(dim=-1)
    if values.dim() != 2 or values.shape[0] != len(rows):
        raise ValueError(
            f"`attributions` must be (N, T) for the {len(rows)} token list(s), got shape "
            f"{tuple(attributions.shape)}"
        )
    for i, row in enumerate(rows):
        if len(row) != values.shape[1]:
            raise ValueError(
                f"`tokens` of sample {i} has {len(row)} tokens, the attributions have "
                f"{values.shape[1]}"
            )
    if labels is not None and len(labels) != len(rows):
        raise ValueError(
            f"`labels` must have one entry per sample ({len(rows)}), got {len(labels)}"
        )
    return rows, list(values)


def _strength(values: torch.Tensor, scale: Optional[float]) -> torch.Tensor:
    bound = float(values.abs().max()) if scale is None else float(scale)
    return values / bound if bound > 0 else torch.zeros_like(values)


def _rgba(strength: float) -> tuple[float, float, float, float]:
    """Red (positive) or blue (negative), as opaque as the strength (at most 0.85)."""
    r, g, b = POSITIVE if strength >= 0 else NEGATIVE
    return (r / 255, g / 255, b / 255, min(abs(strength), 1.0) * 0.85)


def _colour(strength: float) -> str:
    """:func:`_rgba` as a CSS rgba string."""
    r, g, b, a = _rgba(strength)
    return f"rgba({round(r * 255)}, {round(g * 255)}, {round(b * 255)}, {a:.3f})"


class TextAttributionHTML(str):
    """HTML text that a notebook renders (``_repr_html_``); a plain ``str`` otherwise."""

    def _repr_html_(self) -> str:
        return str(self)


def text_attribution_html(
    tokens: Tokens,
    attributions: Any,
    labels: Optional[Sequence[str]] = None,
    scale: Optional[float] = None,
) -> TextAttributionHTML:
    """Coloured tokens as HTML, one line per sample, each with its ``labels`` entry (e.g. the
    predicted class) and the sum of its attributions."""
    rows, values = token_scores(tokens, attributions, labels)
    lines = []
    for i, (row, value) in enumerate(zip(rows, values)):
        strength = _strength(value, scale)
        spans = "".join(
            f'<span title="{float(v):+.4g}" style="background:{_colour(float(s))};'
            f'padding:1px 2px;margin:0 1px;border-radius:3px">{html_lib.escape(token)}</span>'
            for token, v, s in zip(row, value, strength)
        )
        label = "" if labels is None else f"<b>{html_lib.escape(str(labels[i]))}</b> "
        total = f" <small>(sum {float(value.sum()):+.3g})</small>"
        lines.append(f'<div style="margin:4px 0;line-height:1.9">{label}{spans}{total}</div>')
    return TextAttributionHTML("<div>" + "".join(lines) + "</div>")


def visualize_text(
    tokens: Tokens,
    attributions: Any,
    labels: Optional[Sequence[str]] = None,
    scale: Optional[float] = None,
    title: Optional[str] = None,
    width: float = 8.0,
) -> Any:
    """A matplotlib figure of coloured tokens, one line per sample (wrapped at ``width``
    inches), with a colour bar of the attribution's strength."""
    figure_cls = require_matplotlib()
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import LinearSegmentedColormap, Normalize

    rows, values = token_scores(tokens, attributions, labels)
    char_width, line_height = 0.09, 0.32  # inches per character and per line
    layout: list[list[tuple[float, int, str, float]]] = []
    for row, value in zip(rows, values):
        strength, placed, x, line = _strength(value, scale), [], 0.0, 0
        for token, s in zip(row, strength):
            w = char_width * (len(token) + 1)
            if x + w > width and x > 0:
                x, line = 0.0, line + 1
            placed.append((x, line, token, float(s)))
            x += w
        layout.append(placed)
    lines = sum(max(p[1] for p in placed) + 1 for placed in layout) + (
        0 if labels is None else len(rows)
    )
    fig = figure_cls(figsize=(width + 1.0, line_height * lines + 1.0), layout="constrained")
    ax = fig.add_subplot()
    ax.set_xlim(0, width)
    ax.set_ylim(lines, 0)
    ax.axis("off")
    y = 0
    for i, placed in enumerate(layout):
        if labels is not None:
            ax.text(0, y + 0.5, str(labels[i]), fontsize=9, fontweight="bold", va="center")
            y += 1
        for x, line, token, s in placed:
            ax.text(x, y + line + 0.5, token, fontsize=9, va="center", family="monospace",
                    bbox=dict(boxstyle="round,pad=0.15", linewidth=0,
                              facecolor=_rgba(s)))  # fmt: skip
        y += max(p[1] for p in placed) + 1
    cmap = LinearSegmentedColormap.from_list("attribution", [_rgba(-1.0), (1, 1, 1, 1), _rgba(1.0)])
    bar = fig.colorbar(ScalarMappable(Normalize(-1, 1), cmap), ax=ax, orientation="horizontal",
                       fraction=0.08, shrink=0.5)  # fmt: skip
    bar.set_label(
        "attribution / largest magnitude" if scale is None else f"attribution / {scale:g}"
    )
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
