"""NoiseTunnel: SmoothGrad, SmoothGrad-squared and VarGrad around any Captum-backed explainer.

SmoothGrad (Smilkov et al. 2017) averages the attributions of ``nt_samples`` noisy copies
``x + ε``, ``ε ~ N(0, stdevs²)``; SmoothGrad-squared averages their squares; VarGrad (Adebayo et
al. 2018) takes their variance. The noise comes from torch's global generator of the input's
device; the ``seed`` option (default 0) seeds it for the call and the generator is restored
afterwards.
"""

from __future__ import annotations

import inspect
from typing import Any, Optional, Union

import torch
from captum.attr import NoiseTunnel

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.gradient_shap import check_stdevs
from foxcem.core.batching import auto_batch_size, check_batch_size
from foxcem.core.checks import (
    check_bool,
    check_choice,
    check_options,
    check_positive_int,
)
from foxcem.core.inputs import Inputs
from foxcem.core.registry import get_explainer_class, register_explainer
from foxcem.core.seeding import check_seed

__all__ = ["LayerNoiseTunnelCVExplainer", "NoiseTunnelCVExplainer", "NT_TYPES"]

#: Smoothing types: SmoothGrad, SmoothGrad-squared, VarGrad.
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")

ExplainerLike = Union[str, CaptumExplainer, type]


def _resolve_explainer(explainer: ExplainerLike) -> CaptumExplainer:
    if isinstance(explainer, str):
        explainer = get_explainer_class(explainer)
    if isinstance(explainer, type):
        if not issubclass(explainer, CaptumExplainer):
            raise TypeError(
                f"`explainer` must be a Captum-backed explainer, got the class {explainer.__name__}"
            )
        explainer = explainer()
    if not isinstance(explainer, CaptumExplainer):
        raise TypeError(
            "`explainer` must be a registered name, a Captum-backed explainer or its class, "
            f"got {type(explainer).__name__}"
        )
    if isinstance(explainer, NoiseTunnelCVExplainer):
        raise ValueError("`explainer` must not be another noise tunnel")
    return explainer


def _with_wrapped_attribute(algorithm: Any) -> Any:
    """Give ``algorithm.attribute`` the ``__wrapped__`` that Captum's NoiseTunnel calls.

    NoiseTunnel runs ``algorithm.attribute.__wrapped__(algorithm, ...)``, which only the methods
    decorated with Captum's usage logger have (``LayerLRP.attribute`` is not); for the others the
    plain class function is attached to this object's bound method.
    """
    if hasattr(algorithm.attribute, "__wrapped__"):
        return algorithm
    bound = algorithm.attribute

    def attribute(*args: Any, **kwargs: Any) -> Any:
        return bound(*args, **kwargs)

    attribute.__wrapped__ = type(algorithm).attribute  # type: ignore[attr-defined]
    algorithm.attribute = attribute
    return algorithm


def _copies_per_pass(value: Union[int, str, None], inputs: Inputs, copies: int) -> Optional[int]:
    rows = check_batch_size(value, "nt_samples_batch_size")
    if rows != "auto":
        return rows  # type: ignore[return-value]
    total = inputs.num_samples * copies
    rows = auto_batch_size(inputs.sample_numel, inputs.device, total, minimum=64)
    return None if rows >= total else max(1, rows // inputs.num_samples)


@register_explainer("noise_tunnel")
class NoiseTunnelCVExplainer(CaptumExplainer):
    """Smooth the attributions of another explainer over noisy copies of the input.

    Args:
        explainer: the explainer to smooth: a registered name (``"saliency"``…), an instance or a
            class of a Captum-backed explainer. Default ``"integrated_gradients"``.

    Options of :meth:`~foxcem.Explainer.calculate_features`:

    * ``nt_type`` (``"smoothgrad"``) — ``"smoothgrad"`` (mean), ``"smoothgrad_sq"`` (mean of
      squares) or ``"vargrad"`` (variance).
    * ``nt_samples`` (5) — noisy copies per sample; ``nt_samples_batch_size`` (``"auto"``:
      cache-sized passes on the CPU, all at once on a GPU; ``None``: all at once) — copies per
      pass.
    * ``stdevs`` (1.0, Captum's default; about 0.1–0.2 of the input range is the usual choice) —
      std of the Gaussian noise.
    * ``draw_baseline_from_distrib`` (``None``: ``True`` for the SHAP explainers, whose
      ``baselines`` are a distribution, else ``False``) — draw one baseline per noisy copy from
      the explainer's baselines (GradientSHAP-style).
    * ``seed`` (0) — seeds the noise (``None``: the global generator, left as it was); it is also
      passed to the inner explainer when that takes a seed.
    * any other keyword goes to the inner explainer (its own names; a misspelt one raises
      ``TypeError``).

    Returns:
        The inner explainer's attribution shape (e.g. (N, C, H, W)).
    """

    algorithm_name = "Noise Tunnel"
    captum_class = NoiseTunnel

    def __init__(self, explainer: ExplainerLike = "integrated_gradients") -> None:
        self.explainer = _resolve_explainer(explainer)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(explainer={self.explainer!r})"

    def options(self) -> list[str]:
        """Its own options and those of the explainer it wraps."""
        own = super().options()
        return own + [name for name in self.explainer.options() if name not in own]

    def create_explainer(self, model: Any, **kwargs: Any) -> NoiseTunnel:
        """A Captum ``NoiseTunnel`` around the inner explainer's Captum object for ``model``."""
        return NoiseTunnel(self.explainer.create_explainer(model, **kwargs))

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        nt_type: str = "smoothgrad",
        nt_samples: int = 5,
        nt_samples_batch_size: Union[int, str, None] = "auto",
        stdevs: float = 1.0,
        draw_baseline_from_distrib: Optional[bool] = None,
        seed: Optional[int] = 0,
        **options: Any,
    ) -> CaptumCall:
        seed = check_seed(seed)
        if "seed" in inspect.signature(self.explainer._prepare).parameters:
            options["seed"] = seed
        if isinstance(self.explainer, CaptumExplainer):
            inner_name = self.explainer.registry_name or type(self.explainer).__name__
            check_options(f"noise_tunnel over {inner_name}", options, self.explainer.options())
        inner = self.explainer._prepare(model, input_data, **options)
        if draw_baseline_from_distrib is None:
            draw_baseline_from_distrib = self.explainer.takes_baseline_distribution
        check_bool(draw_baseline_from_distrib, "draw_baseline_from_distrib")
        baselines = inner.options.get("baselines")
        if (
            isinstance(baselines, torch.Tensor)
            and not draw_baseline_from_distrib
            and baselines.shape[0] not in (1, input_data.num_samples)
        ):
            raise ValueError(
                f"`baselines` holds {baselines.shape[0]} baselines for {input_data.num_samples} "
                "samples; pass `draw_baseline_from_distrib=True` to draw one per noisy copy"
            )
        nt_options = {
            "nt_type": check_choice(nt_type, "nt_type", NT_TYPES),
            "nt_samples": check_positive_int(nt_samples, "nt_samples"),
            "nt_samples_batch_size": _copies_per_pass(
                nt_samples_batch_size, input_data, check_positive_int(nt_samples, "nt_samples")
            ),
            "stdevs": (
                tuple(check_stdevs(v) for v in stdevs)
                if isinstance(stdevs, tuple)
                else check_stdevs(stdevs)
            ),  # fmt: skip
            "draw_baseline_from_distrib": draw_baseline_from_distrib,
            **inner.options,
        }
        return CaptumCall(
            NoiseTunnel(_with_wrapped_attribute(inner.algorithm)),
            nt_options,
            finish=inner.finish,
            seed=seed,
            random=True,
            context=inner.context,
        )


@register_explainer("layer_noise_tunnel")
class LayerNoiseTunnelCVExplainer(NoiseTunnelCVExplainer):
    """:class:`NoiseTunnelCVExplainer` around a layer method, by default
    ``layer_integrated_gradients`` (its ``layer`` option: the last ``nn.Conv2d`` unless given).

    Returns:
        The layer method's attribution shape (that of the layer's output).
    """

    algorithm_name = "Layer Noise Tunnel"

    def __init__(self, explainer: ExplainerLike = "layer_integrated_gradients") -> None:
        super().__init__(explainer)
        if not isinstance(self.explainer, LayerCaptumExplainer):
            raise TypeError(
                "`explainer` of layer_noise_tunnel must be a layer method (e.g. "
                f"'layer_integrated_gradients'), got {type(self.explainer).__name__}"
            )
