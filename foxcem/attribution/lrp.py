"""Layer-wise Relevance Propagation (Bach et al. 2015) and its layer form, over Captum.

Captum's LRP attaches a ``rule`` and ``activations`` to every leaf layer, registers hooks, and
rules such as ``GammaRule`` replace ``weight.data`` while it runs; it restores the values with
``load_state_dict`` (an in-place write into every parameter, which breaks a backward pass the
caller has pending) and deletes every ``rule`` attribute afterwards — also the ones the caller had
set. Here the call instead puts back the caller's own ``rule`` attributes and each parameter's
original storage and values without writing into the parameters, so the caller's
``nn.Parameter`` objects, any optimizer holding them and a pending ``loss.backward()`` see no
change at all; the model-state guard removes hooks and attributes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any, Optional

import torch
from captum.attr import LRP, LayerLRP
from captum.attr._core.lrp import SUPPORTED_LAYERS_WITH_RULES, SUPPORTED_NON_LINEAR_LAYERS
from captum.attr._utils.lrp_rules import EpsilonRule, GammaRule, PropagationRule
from torch import nn

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer, LayerCaptumExplainer
from foxcem.attribution.layers import require_module
from foxcem.core.checks import check_bool
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = [
    "LRPCVExplainer",
    "LayerLRPCVExplainer",
    "PassThroughRule",
    "automatic_rules",
    "lrp_rules_applied",
]

RuleMap = Mapping[nn.Module, PropagationRule]


def _check_rules(model: nn.Module, rules: Optional[RuleMap]) -> dict[nn.Module, PropagationRule]:
    if rules is None:
        return {}
    if not isinstance(rules, Mapping):
        raise TypeError(
            f"`rules` must map layers to Captum PropagationRule objects, got {type(rules).__name__}"
        )
    modules = list(model.modules())
    for layer, rule in rules.items():
        if not any(layer is m for m in modules):
            raise ValueError(f"`rules` names a layer that is not part of the model: {layer!r}")
        if not isinstance(rule, PropagationRule):
            raise TypeError(
                f"`rules` must hold Captum PropagationRule objects, got {type(rule).__name__}"
            )
    return dict(rules)


class PassThroughRule(PropagationRule):
    """Relevance passes a layer as its gradient does, with no hook: exact for layers that only
    reshape (``nn.Flatten``, ``nn.Unflatten``, ``nn.Identity``); for another elementwise
    activation (``nn.Sigmoid``, ``nn.GELU``, ...) the relevance is scaled by its derivative."""

    def forward_hook(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        self._handle_input_hooks: list[Any] = []
        return None

    def _manipulate_weights(self, module: nn.Module, inputs: Any, outputs: Any) -> None:
        return None


def _weighted(module: nn.Module) -> bool:
    return isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))


def automatic_rules(model: nn.Module, given: Mapping[nn.Module, PropagationRule]) -> RuleMap:
    """Rules for the leaf layers that have none (neither in ``given`` nor attached by the
    caller as ``layer.rule``), after the usual composite LRP recipe: the gamma rule for the lower
    half of the convolutions and linear layers (it favours positive contributions, which keeps
    the maps of the many lower layers readable), the epsilon rule for the upper half (it absorbs
    weak, noisy contributions); :class:`PassThroughRule` for parameterless layers Captum has no
    rule for (``nn.Flatten``, ``nn.Sigmoid``, ...). Layers Captum handles itself (ReLU, Tanh,
    Dropout, pooling, BatchNorm2d) keep Captum's treatment."""
    leaves = [m for m in model.modules() if not list(m.children())]
    free = [m for m in leaves if all(m is not g for g in given) and "rule" not in vars(m)]
    weighted = [m for m in leaves if _weighted(m)]
    lower = {id(m) for m in weighted[: len(weighted) // 2]}
    rules: dict[nn.Module, PropagationRule] = {}
    for module in free:
        if _weighted(module):
            rules[module] = GammaRule() if id(module) in lower else EpsilonRule()
        elif (
            type(module) in SUPPORTED_NON_LINEAR_LAYERS
            or type(module) in SUPPORTED_LAYERS_WITH_RULES
        ):
            continue
        elif not any(True for _ in module.parameters(recurse=False)):
            rules[module] = PassThroughRule()
    return rules


def _with_rules(model: nn.Module, rules: RuleMap, auto_rules: Any) -> RuleMap:
    """``rules`` completed by :func:`automatic_rules`; without them, a layer that would get no
    rule is named up front (instead of Captum's error from inside the call)."""
    automatic = automatic_rules(model, rules)
    if check_bool(auto_rules, "auto_rules"):
        return {**automatic, **rules}
    missing = [m for m, rule in automatic.items() if isinstance(rule, PassThroughRule)]
    if missing:
        raise ValueError(
            f"LRP has no rule for the layer {missing[0]!r} (Captum defines none for "
            f"{type(missing[0]).__name__}); give one in `rules` or use auto_rules=True"
        )
    return dict(rules)


@contextlib.contextmanager
def lrp_rules_applied(
    model: nn.Module, rules: Mapping[nn.Module, PropagationRule], algorithm: Any = None
) -> Iterator[None]:
    """Attach ``rules`` (``layer.rule = rule``) for the block; restore rules and parameters after.

    Afterwards every module's ``rule`` attribute is what it was before (present or absent), and
    every parameter has its original storage (``param.data``) holding its original values. The
    parameters are restored without an in-place write to them, so a backward pass the caller has
    pending through them stays valid; for that, Captum's own restore of ``algorithm``
    (``load_state_dict``, which copies into every parameter in place) is switched off.
    """
    if algorithm is not None:
        algorithm._restore_state = lambda: None
    modules = list(model.modules())
    saved_rules = {id(m): m.__dict__["rule"] for m in modules if "rule" in vars(m)}
    params = {id(p): p for p in model.parameters()}.values()
    saved_data = [(p, p.data, p.detach().clone()) for p in params]
    try:
        for layer, rule in rules.items():
            layer.rule = rule
        yield
    finally:
        for module in modules:
            if id(module) in saved_rules:
                module.rule = saved_rules[id(module)]
            elif "rule" in vars(module):
                del module.rule
        with torch.no_grad():
            for param, data, values in saved_data:
                # ``data`` is ``param.data``: writing through it does not bump the version
                # counter that the caller's autograd graph checks.
                if param.data.data_ptr() != data.data_ptr() or param.data.shape != data.shape:
                    param.data = data
                if not torch.equal(data, values):
                    data.copy_(values)


@register_explainer("lrp")
class LRPCVExplainer(CaptumExplainer):
    """Layer-wise Relevance Propagation (Captum's ``LRP``; epsilon rule by default).

    Every leaf layer needs a rule. With ``auto_rules=True`` (the default) the layers without one
    get the composite recipe of :func:`automatic_rules`: gamma rule for the lower half of the
    convolutions and linear layers, epsilon rule for the upper half, relevance passed through
    parameterless layers Captum has no rule for (``nn.Flatten``, ``nn.Sigmoid``). With
    ``auto_rules=False`` Captum's own defaults apply (epsilon rule for ``Conv2d``, ``Linear``,
    ``BatchNorm2d`` and pooling; ``ReLU``/``Tanh``/``Dropout`` passed through) and any other layer
    needs one in ``rules``. A layer may be used only once per forward pass.

    Options:

    * ``rules`` — ``{layer: PropagationRule}`` for this call (e.g. ``GammaRule()`` for the first
      convolutions); rules the caller attached as ``layer.rule`` are used and kept too; both win
      over the automatic ones.
    * ``auto_rules`` (``True``) — see above.
    * ``return_convergence_delta`` (``False``) — also return ``f_t(x) − Σ relevance``.
    * ``verbose`` (``False``), ``additional_forward_args``.

    Returns:
        Relevances of the input's shape (N, C, H, W), summing to about ``f_t(x)`` per sample.
    """

    hooks_modules = True

    algorithm_name = "LRP"
    captum_class = LRP

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        rules: Optional[RuleMap] = None,
        auto_rules: bool = True,
        return_convergence_delta: bool = False,
        verbose: bool = False,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        rules = _with_rules(model, _check_rules(model, rules), auto_rules)
        options = {
            "return_convergence_delta": check_bool(
                return_convergence_delta, "return_convergence_delta"
            ),
            "verbose": check_bool(verbose, "verbose"),
            "additional_forward_args": additional_forward_args,
        }
        algorithm = self.create_explainer(model)
        context = lrp_rules_applied(model, rules, algorithm)
        return CaptumCall(algorithm, options, context=context)


@register_explainer("layer_lrp")
class LayerLRPCVExplainer(LayerCaptumExplainer):
    """LRP relevances of a layer's neurons (Captum's ``LayerLRP``).

    Options: those of :class:`LRPCVExplainer` (``auto_rules`` included), plus ``layer``
    (default: the model's last ``nn.Conv2d``) and ``attribute_to_layer_input`` (``False``).

    Returns:
        Relevances of the layer output's (or input's) shape.
    """

    algorithm_name = "Layer LRP"
    captum_class = LayerLRP

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        layer: Optional[nn.Module] = None,
        rules: Optional[RuleMap] = None,
        auto_rules: bool = True,
        return_convergence_delta: bool = False,
        attribute_to_layer_input: bool = False,
        verbose: bool = False,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        require_module(model, self.algorithm_name)
        rules = _with_rules(model, _check_rules(model, rules), auto_rules)
        options = {
            "return_convergence_delta": check_bool(
                return_convergence_delta, "return_convergence_delta"
            ),
            "attribute_to_layer_input": check_bool(
                attribute_to_layer_input, "attribute_to_layer_input"
            ),
            "verbose": check_bool(verbose, "verbose"),
            "additional_forward_args": additional_forward_args,
        }
        algorithm = self.create_explainer(model, layer=layer)
        context = lrp_rules_applied(model, rules, algorithm)
        return CaptumCall(algorithm, options, context=context)
