"""What the demo runs: its methods, their options, and the settings of one run."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Union

import torch
from torch import nn

__all__ = [
    "ALIASES",
    "ATTRIBUTION_OPTIONS",
    "CEM_OPTIONS",
    "DEFAULT_CEM",
    "DEMO_GAMMA",
    "DEFAULT_METHODS",
    "DEFAULT_NUM_IMAGES",
    "FIGURE_DPI",
    "L0_TOLERANCE",
    "METHODS",
    "SIGNS",
    "DemoConfig",
    "DemoMethod",
    "parse_methods",
    "select_images",
]


@dataclass(frozen=True)
class DemoMethod:
    label: str  # shown in the figure and the table
    registry: str  # the explainer's registry name
    kind: str  # "attribution" or "cem"


#: The demo's methods, in the order they are run and drawn.
METHODS: dict[str, DemoMethod] = {
    "ig": DemoMethod("IG", "integrated_gradients", "attribution"),
    "layer_ig": DemoMethod("Layer IG", "layer_integrated_gradients", "attribution"),
    "saliency": DemoMethod("Saliency", "gradient", "attribution"),
    "cem_pp": DemoMethod("CEM PP", "cem", "cem"),
    "cem_pn": DemoMethod("CEM PN", "cem", "cem"),
    "cem_pn_urv": DemoMethod("CEM PN (URV)", "cem", "cem"),
}
DEFAULT_METHODS: tuple[str, ...] = tuple(METHODS)
ALIASES = {
    "integrated_gradients": "ig",
    "layer_integrated_gradients": "layer_ig",
    "gradient": "saliency",
    "pp": "cem_pp",
    "pn": "cem_pn",
    "pn_urv": "cem_pn_urv",
    "urv": "cem_pn_urv",
}
DEFAULT_NUM_IMAGES = 6

#: CEM settings shared by the demo's CEM runs (``num_iter`` is ``--num-iter``).
DEFAULT_CEM: dict[str, Any] = {"num_iter": 200}
#: Weight γ of the autoencoder term in the demo's CEM runs: its PPs keep strokes and its PNs add
#: strokes, rather than scattered pixels (0 turns the autoencoder off).
DEMO_GAMMA = 100.0
#: Per-method CEM options (passed to ``CEMExplainer.calculate_features``).
CEM_OPTIONS: dict[str, dict[str, Any]] = {
    "cem_pp": {"mode": "PP", "gradient": "autograd"},
    "cem_pn": {"mode": "PN", "gradient": "autograd"},
    "cem_pn_urv": {"mode": "PN", "gradient": "urv"},
}
#: Options of the attribution methods.
ATTRIBUTION_OPTIONS: dict[str, dict[str, Any]] = {
    "ig": {"n_steps": 50, "return_convergence_delta": True},
    "layer_ig": {"n_steps": 50, "return_convergence_delta": True},
    "saliency": {"aggregate": "abs_max"},
}
#: Heatmap sign per figure label: IG and Layer IG are signed, saliency is a magnitude.
SIGNS = {"IG": "all", "Layer IG": "all", "Saliency": "absolute"}
#: Resolution of the figures (dots per inch).
FIGURE_DPI = 80
#: An entry of δ counts towards ‖δ‖₀ when its magnitude exceeds this: 1% of the [0, 1] pixel
#: range. The averaged ExpGrad iterate keeps faint traces (~1e-4) of every pixel it ever touched;
#: they are invisible in the figures and would make every PN look dense.
L0_TOLERANCE = 1e-2


@dataclass
class DemoConfig:
    """Settings of one demo run (the command-line options).

    Attributes:
        seed: seed of the data split, the training and the CEM generators.
        device: torch device of the model and the explanations.
        methods: keys of :data:`METHODS` (or registry names) to run.
        num_iter: CEM optimisation steps.
        num_images: test digits explained (the first of each class 0, 1, 2, ...).
        output: folder for ``explanations.png``, ``cem_savepoints.png`` and ``summary.json``.
        cache_dir: weights cache (default :func:`default_cache_dir`).
        use_cache: read and write the weights cache.
        epochs: training epochs of the CNN (the autoencoder trains for ``ae_epochs``).
        ae_epochs: training epochs of the autoencoder.
        gamma: weight of the autoencoder term in the CEM runs (0: no autoencoder).
        progress: show progress bars.
        savepoint_figure: also run one CEM PN with savepoints and draw ``cem_savepoints.png``.
        threads: torch CPU threads for the whole run (0, the default: foxcem's own choice per
            call, see :mod:`foxcem.core.threads`).
        extra: per-method extra CEM options, e.g. ``{"cem_pn": {"K": 10.0}}``.
    """

    seed: int = 0
    device: str = "cpu"
    methods: Sequence[str] = DEFAULT_METHODS
    num_iter: int = DEFAULT_CEM["num_iter"]
    num_images: int = DEFAULT_NUM_IMAGES
    output: Union[str, Path] = Path("foxcem-demo")
    cache_dir: Optional[Union[str, Path]] = None
    use_cache: bool = True
    epochs: int = 30
    ae_epochs: int = 40
    gamma: float = DEMO_GAMMA
    progress: bool = True
    savepoint_figure: bool = True
    threads: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def parse_methods(text: Union[str, Sequence[str]]) -> list[str]:
    """Method keys from a comma-separated list (demo names or registry names), in demo order.

    Raises:
        ValueError: for an unknown name (the message lists the known ones) or an empty list.
    """
    items = text.split(",") if isinstance(text, str) else list(text)
    chosen = set()
    for item in items:
        key = item.strip().lower().replace("-", "_")
        if not key:
            continue
        if key == "all":
            chosen.update(METHODS)
            continue
        key = ALIASES.get(key, key)
        if key not in METHODS:
            raise ValueError(
                f"unknown demo method {item.strip()!r}; choose from {', '.join(METHODS)}"
            )
        chosen.add(key)
    if not chosen:
        raise ValueError(f"no method given; choose from {', '.join(METHODS)}")
    return [key for key in METHODS if key in chosen]


def select_images(labels: torch.Tensor, num_images: int) -> list[int]:
    """Indices of test digits to explain: the first of each class 0, 1, 2, ..., then repeating."""
    labels = labels.cpu()
    per_class = {int(c): (labels == c).nonzero().flatten().tolist() for c in labels.unique()}
    chosen: list[int] = []
    rank = 0
    while len(chosen) < num_images:
        added = False
        for cls in sorted(per_class):
            if rank < len(per_class[cls]) and len(chosen) < num_images:
                chosen.append(per_class[cls][rank])
                added = True
        if not added:
            break
        rank += 1
    return chosen


def figure_label(key: str, model: nn.Module) -> str:
    """The figure label of a method: a layer method names its layer ("Layer IG (conv2)")."""
    from foxcem.attribution.layers import get_last_conv_layer, layer_name

    method = METHODS[key]
    if not method.registry.startswith("layer_"):
        return method.label
    return f"{method.label} ({layer_name(model, get_last_conv_layer(model))})"
