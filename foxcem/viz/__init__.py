"""Draw attributions and contrastive explanations.

Two layers:

* pure-torch functions (:mod:`foxcem.viz.images`), usable anywhere (TensorBoard logging, PNG
  writing) with no plotting library: :func:`normalize_attribution`, :func:`attribution_to_rgb`,
  :func:`apply_colormap`, :func:`overlay`, :func:`to_uint8`, :func:`enlarge`;
* matplotlib figures, which need the ``demo`` extra (``pip install 'foxcem[demo]'``) and import
  matplotlib only when called: :func:`visualize_image_attr` (one attribution over its image,
  as Captum's), :func:`plot_explanation_grid`, :func:`plot_savepoints`, :func:`plot_pp_pn`. They build a :class:`matplotlib.figure.Figure` without pyplot, so they
  change no global backend state; save one with ``fig.savefig(path)``;
* text and tables: :func:`visualize_text` and :func:`text_attribution_html` (coloured tokens),
  :func:`plot_feature_attributions` (a bar per feature).
"""

from foxcem.viz.attr_image import visualize_image_attr
from foxcem.viz.cem_plots import plot_pp_pn, plot_savepoints
from foxcem.viz.figures import require_matplotlib
from foxcem.viz.grid import plot_explanation_grid
from foxcem.viz.images import (
    SIGNS,
    apply_colormap,
    attribution_to_rgb,
    enlarge,
    normalize_attribution,
    overlay,
    to_uint8,
)
from foxcem.viz.tables import plot_feature_attributions
from foxcem.viz.text import text_attribution_html, visualize_text
from foxcem.viz.views import denoise, plot_contour

__all__ = [
    "denoise",
    "plot_contour",
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
    "visualize_image_attr",
    "visualize_text",
    "text_attribution_html",
    "plot_feature_attributions",
    "require_matplotlib",
]
