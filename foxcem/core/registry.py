"""Choose an explainer by name: ``get_explainer("integrated_gradients")``.

The built-in explainers register themselves when their modules are imported; ``import foxcem``
(which runs before any ``foxcem.*`` module) imports them all.
"""

from __future__ import annotations

import difflib
import re
from typing import TYPE_CHECKING, Callable, TypeVar, Union

if TYPE_CHECKING:
    from foxcem.core.explainer import Explainer

__all__ = [
    "aliases_of",
    "available_explainers",
    "get_explainer",
    "register_explainer",
    "resolve_explainer",
]

_REGISTRY: dict[str, type[Explainer]] = {}
E = TypeVar("E", bound="type[Explainer]")


def register_explainer(name: str) -> Callable[[E], E]:
    """Class decorator that makes an :class:`~foxcem.Explainer` available under ``name``."""

    def decorate(cls: E) -> E:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"an explainer named {name!r} is already registered")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return decorate


def available_explainers() -> list[str]:
    """The names accepted by :func:`get_explainer`, sorted."""
    return sorted(_REGISTRY)


#: Other names of the built-in explainers: short forms, and Captum's class names in snake_case
#: (``IntegratedGradients`` -> ``integrated_gradients`` is found without an alias).
ALIASES = {
    "ig": "integrated_gradients",
    "layer_ig": "layer_integrated_gradients",
    "gradcam": "layer_gradcam",
    "grad_cam": "layer_gradcam",
    "layer_grad_cam": "layer_gradcam",
    "guided_grad_cam": "guided_gradcam",
    "deep_lift": "deeplift",
    "deep_lift_shap": "deeplift_shap",
    "layer_deep_lift": "layer_deeplift",
    "layer_deep_lift_shap": "layer_deeplift_shap",
    "contrastive_explanation": "cem",
    "full_gradient": "fullgrad",
    "full_grad": "fullgrad",
}


def _key(name: str) -> str:
    """``"IntegratedGradients"``, ``"integrated-gradients"``, ``" IG "`` -> a registry key."""
    key = re.sub(r"[\s-]+", "_", name.strip())
    key = re.sub(r"([^_])([A-Z][a-z]+)", r"\1_\2", key)  # CamelCase -> snake_case
    key = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key).lower()
    return ALIASES.get(key, key)


def get_explainer_class(name: str) -> type[Explainer]:
    """The explainer class registered under ``name`` (or an alias: ``"ig"``, ``"gradcam"``,
    Captum's class names such as ``"IntegratedGradients"``, the explainer classes' own names
    such as ``"IntegratedGradientsExplainer"`` and FoXAI's ``"IntegratedGradientsCVExplainer"``)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str, got {type(name).__name__}")
    key = _key(name)
    if key not in _REGISTRY:
        # A class name: foxcem's own ("IntegratedGradientsExplainer") or FoXAI's spelling of it
        # ("IntegratedGradientsCVExplainer").
        by_class = {cls.__name__.lower(): cls for cls in _REGISTRY.values()}
        plain = re.sub(r"(cv)?explainer$", "", name.strip().lower())
        found = by_class.get(name.strip().lower()) or by_class.get(plain + "explainer")
        if found is None and plain and _key(plain) in _REGISTRY:
            found = _REGISTRY[_key(plain)]
        if found is None and plain:
            found = _REGISTRY.get(_key(re.sub(r"(CV)?Explainer$", "", name.strip())))
        if found is not None:
            return found
        known = ", ".join(sorted(_REGISTRY))
        close = difflib.get_close_matches(key, [*_REGISTRY, *ALIASES], n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown explainer {name!r}{hint}; known explainers: {known}")
    return _REGISTRY[key]


def aliases_of(name: str) -> list[str]:
    """The other names :func:`get_explainer` accepts for the registered ``name``."""
    return sorted(alias for alias, target in ALIASES.items() if target == name)


def get_explainer(name: str, **kwargs: object) -> Explainer:
    """An instance of the explainer registered under ``name`` (``kwargs`` go to its constructor).

    Raises:
        ValueError: for an unknown name; the message lists the known ones.
    """
    return get_explainer_class(name)(**kwargs)


def resolve_explainer(explainer: Union[str, Explainer]) -> Explainer:
    """An explainer instance from a registered name, or the given instance itself.

    Raises:
        TypeError: ``explainer`` is neither a ``str`` nor an :class:`~foxcem.Explainer`.
        ValueError: for an unknown name; the message lists the known ones.
    """
    from foxcem.core.explainer import Explainer

    instance = get_explainer(explainer) if isinstance(explainer, str) else explainer
    if not isinstance(instance, Explainer):
        raise TypeError(
            "`explainer` must be a registered name or a foxcem Explainer, got "
            f"{type(explainer).__name__}"
        )
    return instance
