"""FullGrad (Srinivas & Fleuret 2019): input-gradients and bias-gradients together.

For a network built of linear maps, biases and piecewise-linear activations (ReLU, max-pooling),
the score splits exactly into an input part and one part per bias:

    f_t(x) = Σ ∇ₓf_t ⊙ x  +  Σ_layers Σ ∇_{b}f_t ⊙ b                      (completeness)

where ``∇_b f_t ⊙ b`` is, at each position of a layer's output, the gradient with respect to that
output times the bias added there. :func:`fullgrad_terms` returns these terms (the reference
check: they sum to the score). The FullGrad saliency map takes, for the input term and every
convolutional bias term, the absolute value, rescales it to [0, 1] per sample, resizes it to the
input's height and width (bilinear), sums over channels, and adds the maps up.

Layers with a bias: ``nn.Conv1d/2d/3d``, ``nn.Linear`` and the BatchNorm layers in eval mode
(whose bias is ``β − μ·γ/√(σ²+ε)``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from foxcem.attribution.layers import require_module
from foxcem.core.checks import check_options
from foxcem.core.explainer import Explainer
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["FullGradCVExplainer", "FullGradTerms", "fullgrad_terms"]

_BIASED = (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


class FullGradTerms(NamedTuple):
    """The parts of the score: ``input`` (N, …) = ∇ₓf ⊙ x, and per biased layer (in forward
    order) ``biases[i]`` shaped like its output = ∇_{output}f ⊙ bias."""

    input: torch.Tensor
    biases: list[torch.Tensor]
    layers: list[nn.Module]


def _effective_bias(module: nn.Module) -> torch.Tensor:
    if isinstance(module, _NORMS):
        scale = module.weight / torch.sqrt(module.running_var + module.eps)  # type: ignore[operator]
        return module.bias - module.running_mean * scale  # type: ignore[operator]
    return module.bias  # type: ignore[return-value]


def _biased_layers(model: nn.Module) -> list[nn.Module]:
    layers = []
    for module in model.modules():
        if isinstance(module, _BIASED) and module.bias is not None:
            layers.append(module)
        elif isinstance(module, _NORMS) and module.affine and module.track_running_stats:
            layers.append(module)
    return layers


def fullgrad_terms(model: nn.Module, x: torch.Tensor, target: torch.Tensor) -> FullGradTerms:
    """The input and bias terms of ``model``'s score for ``target`` (N,) at ``x`` (N, …)."""
    layers = _biased_layers(model)
    outputs: dict[int, torch.Tensor] = {}

    def keep(module: nn.Module, _: Any, output: torch.Tensor) -> None:
        if id(module) in outputs:
            raise ValueError(
                f"FullGrad needs every biased layer to run once per forward pass; {module!r} ran "
                "twice"
            )
        outputs[id(module)] = output

    handles = [layer.register_forward_hook(keep) for layer in layers]
    try:
        point = x.detach().requires_grad_(True)
        scores = model(point)
    finally:
        for handle in handles:
            handle.remove()
    ran = [layer for layer in layers if id(layer) in outputs]
    picked = scores.gather(1, target.view(-1, 1)).sum()
    grads = torch.autograd.grad(picked, [point, *(outputs[id(m)] for m in ran)], allow_unused=True)
    biases = []
    for layer, grad in zip(ran, grads[1:]):
        out = outputs[id(layer)]
        grad = torch.zeros_like(out) if grad is None else grad
        bias = _effective_bias(layer).detach()
        shape = [1] * out.dim()
        shape[-1 if isinstance(layer, nn.Linear) else 1] = -1
        biases.append((grad * bias.view(shape)).detach())
    return FullGradTerms((grads[0] * point).detach(), biases, ran)


def _rescaled(t: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """|t| rescaled to [0, 1] per sample."""
    t = t.abs()
    flat = t.flatten(1)
    low = flat.min(1).values.view(-1, *([1] * (t.dim() - 1)))
    t = t - low
    high = t.flatten(1).max(1).values.view(-1, *([1] * (t.dim() - 1)))
    return t / (high + eps)


@register_explainer("fullgrad")
class FullGradCVExplainer(Explainer):
    """FullGrad saliency (see the module): one map (N, 1, H, W) per image, from the input term
    and the bias terms of every convolution and BatchNorm2d layer (the terms of linear layers
    have no spatial layout and enter only the completeness check, :func:`fullgrad_terms`).

    Needs the model as an ``nn.Module`` (its layers are hooked); no options.
    """

    algorithm_name = "FullGrad"
    input_ndim = 4
    hooks_modules = True

    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """The function computing the terms (:func:`fullgrad_terms`)."""
        return fullgrad_terms

    def options(self) -> list[str]:
        return []

    def _attribute(self, model: Any, inputs: Inputs, target: torch.Tensor, **kwargs: Any) -> Any:
        check_options("fullgrad", kwargs, self.options())
        require_module(model, self.algorithm_name)
        x = inputs.single("fullgrad", "one image tensor (N, C, H, W)")
        terms = fullgrad_terms(model, x, target)
        size = x.shape[2:]
        saliency = _rescaled(terms.input).sum(1, keepdim=True)
        for bias in terms.biases:
            if bias.dim() == 4:
                resized = F.interpolate(_rescaled(bias), size=size, mode="bilinear")
                saliency = saliency + resized.sum(1, keepdim=True)
        return saliency
