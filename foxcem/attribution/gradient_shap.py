"""GradientSHAP (Lundberg & Lee 2017) and its layer form, over Captum.

GradientSHAP averages ``(x − x') · ∂f_t(x' + α(x − x') + ε)/∂x`` over ``n_samples`` draws of a
baseline ``x'`` from the baseline distribution, ``α ~ U(0, 1)`` and ``ε ~ N(0, stdevs²)``. Captum
draws ``α`` and the baseline index from NumPy's global generator and ``ε`` from torch's; with the
``seed`` option (default 0) those generators are seeded for the call and restored afterwards, so
two calls with the same seed agree and the caller's random streams do not move.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from captum.attr import GradientShap, LayerGradientShap
from torch import nn

from foxcem.attribution.baselines import BaselineLike, resolve_baseline_distribution
from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.embedding import embeddings_as_inputs
from foxcem.core.batching import auto_batch_size, check_batch_size
from foxcem.core.checks import check_bool, check_positive_int
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer
from foxcem.core.seeding import check_seed

__all__ = ["GradientSHAPCVExplainer", "LayerGradientSHAPCVExplainer", "check_stdevs"]


def check_stdevs(stdevs: object, name: str = "stdevs") -> float:
    """Check a noise standard deviation: a non-negative number, returned as ``float``."""
    if isinstance(stdevs, bool) or not isinstance(stdevs, (int, float)):
        raise TypeError(f"`{name}` must be a non-negative float, got {type(stdevs).__name__}")
    if not stdevs >= 0:
        raise ValueError(f"`{name}` must be a non-negative float, got {stdevs}")
    return float(stdevs)


def samples_per_pass(
    internal_batch_size: Union[int, str, None], inputs: Inputs, copies: int
) -> Optional[int]:
    """Samples per pass for a method whose rows are the samples times ``copies``."""
    rows = check_batch_size(internal_batch_size, "internal_batch_size")
    if rows == "auto":
        total = inputs.num_samples * copies
        rows = auto_batch_size(inputs.sample_numel, inputs.device, total, minimum=64)
    return None if rows is None else max(1, int(rows) // copies)


def _options(
    input_data: Inputs,
    baselines: BaselineLike,
    n_baselines: int,
    n_samples: int,
    stdevs: float,
    additional_forward_args: Any,
    return_convergence_delta: bool,
    seed: Optional[int],
) -> dict[str, Any]:
    return {
        "baselines": resolve_baseline_distribution(baselines, input_data, seed, n_baselines),
        "n_samples": check_positive_int(n_samples, "n_samples"),
        "stdevs": (
            tuple(check_stdevs(v) for v in stdevs)
            if isinstance(stdevs, tuple)
            else check_stdevs(stdevs)
        ),  # fmt: skip
        "additional_forward_args": additional_forward_args,
        "return_convergence_delta": check_bool(
            return_convergence_delta, "return_convergence_delta"
        ),
    }


@register_explainer("gradient_shap")
class GradientSHAPCVExplainer(CaptumExplainer):
    """GradientSHAP: expected gradients over a baseline distribution, with input noise.

    Options:

    * ``baselines`` — the reference distribution (K, C, H, W): ``None``/``"zeros"`` (default:
      one zero image), a number (constant image), a tensor (K, C, H, W) or (C, H, W), or
      ``"random"``: ``n_baselines`` (10) standard-normal images from a generator seeded with
      ``seed``.
    * ``n_samples`` (5) — random draws per input sample; ``stdevs`` (0.0) — std of the Gaussian
      noise added to each draw.
    * ``seed`` (0) — seeds the draws (``None``: the global generators, left as they were).
    * ``internal_batch_size`` (``"auto"``) — at most this many rows (samples × ``n_samples``)
      per forward/backward pass, which Captum's GradientShap lacks: ``None``: one pass;
      ``"auto"``: cache-sized passes on the CPU, one pass on a GPU, halved while out of memory.
      The draws depend on the pass size (they are seeded all the same).
    * ``return_convergence_delta``, ``multiply_by_inputs`` (``True``),
      ``additional_forward_args``.

    Returns:
        Attributions of the input's shape (N, C, H, W); with ``return_convergence_delta`` a
        tuple ``(attributions, delta)``, delta of shape (N·n_samples,).
    """

    algorithm_name = "Gradient SHAP"
    captum_class = GradientShap
    takes_baseline_distribution = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        n_baselines: int = 10,
        n_samples: int = 5,
        stdevs: float = 0.0,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        multiply_by_inputs: bool = True,
        internal_batch_size: Union[int, str, None] = "auto",
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        seed = check_seed(seed)
        options = _options(
            input_data,
            baselines,
            n_baselines,
            n_samples,
            stdevs,
            additional_forward_args,
            return_convergence_delta,
            seed,
        )
        algorithm = self.create_explainer(model, multiply_by_inputs=multiply_by_inputs)
        chunk = samples_per_pass(internal_batch_size, input_data, options["n_samples"])
        return CaptumCall(algorithm, options, seed=seed, random=True, chunk=chunk)


@register_explainer("layer_gradient_shap")
class LayerGradientSHAPCVExplainer(LayerCaptumExplainer):
    """GradientSHAP attributions of a layer's neurons.

    Options: those of :class:`GradientSHAPCVExplainer`, plus ``layer`` (default: the model's
    last ``nn.Conv2d``) and ``attribute_to_layer_input`` (``False``). For token ids (N, T) at
    their ``nn.Embedding``, baselines are token ids and the draws run between embeddings.

    Returns:
        Attributions of the layer output's (or input's) shape.
    """

    algorithm_name = "Layer Gradient SHAP"
    captum_class = LayerGradientShap
    takes_baseline_distribution = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        baselines: BaselineLike = None,
        n_baselines: int = 10,
        n_samples: int = 5,
        stdevs: float = 0.0,
        additional_forward_args: Any = None,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        multiply_by_inputs: bool = True,
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        seed = check_seed(seed)
        call_inputs, context = input_data, None
        if input_data.has_integers:  # token ids: sample between embeddings
            call_inputs, baselines, layer, context = embeddings_as_inputs(
                model, layer, input_data, baselines, "layer_gradient_shap"
            )
        options = _options(
            call_inputs,
            baselines,
            n_baselines,
            n_samples,
            stdevs,
            additional_forward_args,
            return_convergence_delta,
            seed,
        )
        options["attribute_to_layer_input"] = check_bool(
            attribute_to_layer_input, "attribute_to_layer_input"
        )
        if context is None:
            algorithm = self.create_explainer(
                model, layer=layer, multiply_by_inputs=multiply_by_inputs
            )
            return CaptumCall(algorithm, options, seed=seed, random=True)
        algorithm = LayerGradientShap(model, layer, multiply_by_inputs=multiply_by_inputs)
        return CaptumCall(
            algorithm, options, seed=seed, random=True, context=context, inputs=call_inputs
        )
