"""The shared machinery of the Captum-backed explainers.

A Captum-backed explainer is a few lines: it names its Captum class (``captum_class``) and
implements ``_prepare(model, input_data, *, <options>)`` with *explicit* keyword arguments (named
as in Captum), which checks the options and returns a :class:`CaptumCall` — the Captum object plus
the keyword arguments for its ``attribute``. :class:`CaptumExplainer` runs the call. Because the
options are explicit, a misspelt keyword raises ``TypeError`` naming it instead of being ignored.
Baselines live in :mod:`foxcem.attribution.baselines`, seeded randomness in
:mod:`foxcem.core.seeding`.
"""

from __future__ import annotations

import inspect
from abc import abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn

from foxcem.attribution.captum_call import CaptumCall
from foxcem.attribution.layers import LayerLike, get_last_conv_layer, resolve_layer
from foxcem.core.checks import check_options
from foxcem.core.explainer import Explainer
from foxcem.core.inputs import Inputs
from foxcem.core.progress import check_progress
from foxcem.core.threads import check_threads

__all__ = [
    "CaptumCall",  # re-exported from captum_call
    "CaptumExplainer",
    "LayerCaptumExplainer",
    "check_token_ids",
]


class CaptumExplainer(Explainer):
    """Base of the explainers that run a Captum attribution.

    Subclasses set :attr:`captum_class` and implement :meth:`_prepare` with explicit keyword
    options; :meth:`create_explainer` builds the Captum object, :meth:`_attribute` runs it with the
    resolved per-sample target. Input checks, target resolution, the model-state guard and result
    validation come from :class:`~foxcem.Explainer`.
    """

    #: The Captum attribution class built by :meth:`create_explainer`.
    captum_class: ClassVar[type]
    #: Whether ``baselines`` is a distribution (K, C, H, W) rather than one baseline per sample
    #: (the SHAP methods); a NoiseTunnel then draws one baseline per noisy copy.
    takes_baseline_distribution: ClassVar[bool] = False

    def __init__(self) -> None:
        # Explicit, so that a stray constructor argument raises a TypeError that names it
        # (options belong to ``calculate_features``).
        super().__init__()

    def create_explainer(self, model: Any, **kwargs: Any) -> Any:
        """The Captum attribution object for ``model``.

        Args:
            model: the model (or forward function) to explain.
            **kwargs: arguments of the Captum class's constructor (e.g. ``multiply_by_inputs``);
                an unknown one raises ``TypeError``.
        """
        return self.captum_class(model, **kwargs)

    @abstractmethod
    def _prepare(self, model: Any, input_data: Inputs, **kwargs: Any) -> CaptumCall:
        """Check the options and build the call (``input_data``: the checked
        :class:`~foxcem.core.inputs.Inputs`).

        Implementations list their options as explicit keyword-only arguments (Captum's names),
        so a misspelt option raises ``TypeError`` naming it.
        """

    def options(self) -> list[str]:
        """The names of this method's options (keyword arguments of ``calculate_features``):
        its own, and ``threads`` (CPU threads of the call, :mod:`foxcem.core.threads`)."""
        parameters = inspect.signature(self._prepare).parameters
        own = [name for name, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
        return own + ["threads"] + ([] if "show_progress" in own else ["show_progress"])

    def _attribute(self, model: Any, inputs: Inputs, target: torch.Tensor, **kwargs: Any) -> Any:
        parameters = inspect.signature(self._prepare).parameters.values()
        open_ended = any(p.kind is p.VAR_KEYWORD for p in parameters)  # e.g. NoiseTunnel's
        if not open_ended:
            check_options(self.registry_name or type(self).__name__, kwargs, self.options())
        threads = check_threads(kwargs.pop("threads", "auto"))
        own_bar = "show_progress" in inspect.signature(self._prepare).parameters
        progress = False if own_bar else check_progress(kwargs.pop("show_progress", "auto"))
        call = self._prepare(model, inputs, **kwargs)
        call.threads, call.progress = threads, progress
        call.label = self.registry_name or type(self).__name__
        return call.run(call.inputs if call.inputs is not None else inputs, target)


class LayerCaptumExplainer(CaptumExplainer):
    """Base of the Captum layer methods: ``layer`` defaults to the model's last ``nn.Conv2d``.

    Integer inputs (token ids) are accepted: what varies is the layer's output, e.g. an
    embedding's, with ``baselines`` as token ids (a pad token); ids outside an ``nn.Embedding``
    layer's range are refused up front.
    """

    hooks_modules = True
    accepts_integers = True
    #: Whether ``layer`` may be a list of layers (Captum's LayerIntegratedGradients and
    #: LayerGradientXActivation take one; the result is then a list).
    accepts_layer_list: ClassVar[bool] = False
    #: The layer explained when none is given: the last ``nn.Conv2d`` (Grad-CAM overrides it).
    default_layer = staticmethod(get_last_conv_layer)

    def create_explainer(self, model: Any, layer: LayerLike = None, **kwargs: Any) -> Any:
        """The Captum layer-attribution object for ``model`` and ``layer``.

        Args:
            model: the model to explain.
            layer: the layer whose input/output is attributed (a list of layers where
                :attr:`accepts_layer_list`); ``None``: the model's last ``nn.Conv2d`` (a model
                without one raises ``ValueError``).
            **kwargs: other arguments of the Captum class's constructor.
        """
        if isinstance(layer, (list, tuple)):
            if not self.accepts_layer_list:
                raise TypeError(
                    f"`layer` must be one torch.nn.Module for {self.registry_name}; a list of "
                    "layers is taken by layer_integrated_gradients and layer_input_x_gradient"
                )
            if not layer:
                raise ValueError("`layer` is an empty list")
            layers = [resolve_layer(model, item, type(self).default_layer) for item in layer]
            return self.captum_class(model, layer=layers, **kwargs)
        layer = resolve_layer(model, layer, type(self).default_layer)
        return self.captum_class(model, layer=layer, **kwargs)

    def _check_inputs(self, model: Any, inputs: Inputs, options: dict[str, Any]) -> None:
        """Token ids, and integer baselines, inside the range of the embedding explained."""
        if inputs.has_integers:
            layers = options.get("layer")
            layers = layers if isinstance(layers, (list, tuple)) else [layers]
            # Of several embeddings (token, position…), the ids index the largest vocabulary.
            sizes = [layer.num_embeddings for layer in layers if isinstance(layer, nn.Embedding)]
            if sizes:
                check_token_ids(inputs, options.get("baselines"), max(sizes))


def check_token_ids(inputs: Inputs, baselines: Any, vocabulary: int) -> None:
    """Token ids in ``inputs`` (and integer ``baselines``) are in [0, vocabulary)."""
    named = [(f"input_data[{i}]" if inputs.is_tuple else "input_data", t)
             for i, t in enumerate(inputs.tensors) if not t.is_floating_point()]  # fmt: skip
    if isinstance(baselines, int) and not isinstance(baselines, bool):
        baselines = torch.tensor([baselines])
    for i, value in enumerate(baselines if isinstance(baselines, (tuple, list)) else [baselines]):
        if isinstance(value, int) and not isinstance(value, bool):
            value = torch.tensor([value])
        if isinstance(value, torch.Tensor) and not value.is_floating_point():
            named.append(("baselines" if not isinstance(baselines, (tuple, list)) else
                          f"baselines[{i}]", value))  # fmt: skip
    for name, ids in named:
        low, high = int(ids.min()), int(ids.max())
        if low < 0 or high >= vocabulary:
            raise ValueError(
                f"`{name}` holds token ids in [{low}, {high}], outside the embedding's "
                f"[0, {vocabulary - 1}]"
            )
