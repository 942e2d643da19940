"""Old import paths keep working: ``foxcem.callbacks``, ``foxcem.explainers``, ``foxcem.dataset``, …

Modules moved when the package took its layered layout (``core``, ``attribution``, ``cem``,
``metrics``, ``viz``, ``io``, ``integrations``, ``cli``, ``demo``). Each old path in
:data:`MOVED` is served by a thin module that re-exports the names of the modules that now hold
them, imported on first use (so ``foxcem.dataset`` still works without Lightning until
``explain_dataset`` itself is asked for). Installed by ``import foxcem``.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Sequence
from typing import Any, Optional

__all__ = ["MOVED", "install"]

_METHODS = (
    "conductance",
    "deeplift",
    "grad_cam",
    "gradient",
    "gradient_shap",
    "guided_backprop",
    "input_x_gradient",
    "integrated_gradients",
    "layers",
    "lrp",
    "noise_tunnel",
    "occlusion",
    "saliency",
)

#: old module path -> the modules that now hold its names, searched in order.
MOVED: dict[str, tuple[str, ...]] = {
    "foxcem.base": ("foxcem.core.explainer",),
    "foxcem.checks": ("foxcem.core.checks",),
    "foxcem.model_state": ("foxcem.core.model_state",),
    "foxcem.registry": ("foxcem.core.registry",),
    "foxcem._progress": ("foxcem.core.progress",),
    "foxcem.explainers": ("foxcem.attribution",),
    "foxcem.explainers._captum": (
        "foxcem.attribution.captum_explainer",
        "foxcem.attribution.baselines",
        "foxcem.core.seeding",
        "foxcem.core.checks",
    ),
    **{f"foxcem.explainers.{name}": (f"foxcem.attribution.{name}",) for name in _METHODS},
    "foxcem.visualization": ("foxcem.viz",),
    "foxcem.cem.gradients": ("foxcem.cem.gradient_source", "foxcem.cem.urv"),
    "foxcem.dataset": (
        "foxcem.io.shards",
        "foxcem.io.datasets",
        "foxcem.integrations.lightning.explain_dataset",
    ),
    "foxcem.callbacks": ("foxcem.integrations.lightning.callback",),
    "foxcem.lightning": ("foxcem.integrations.lightning",),
    "foxcem.lightning.explain_module": ("foxcem.integrations.lightning.explain_module",),
    "foxcem.lightning.writer": ("foxcem.integrations.lightning.writer",),
}


class MovedModule(types.ModuleType):
    """A module that forwards attribute look-ups to the modules that now hold its names."""

    __targets__: Sequence[str] = ()

    def __getattr__(self, name: str) -> Any:
        # Dunder probes (``__path__``, ``__file__``, …) must not be forwarded: answering them
        # with the new module's would let the import system load its files a second time.
        if name.startswith("__") and name != "__all__":
            raise AttributeError(name)
        if name == "__all__":
            names: list[str] = []
            for target in self.__targets__:
                names += list(getattr(importlib.import_module(target), "__all__", ()))
            return names
        for target in self.__targets__:
            module = importlib.import_module(target)
            try:  # getattr, not vars(): a target may itself serve names lazily
                return getattr(module, name)
            except AttributeError:
                continue
        raise AttributeError(
            f"module {self.__name__!r} (now {', '.join(self.__targets__)}) has no attribute "
            f"{name!r}"
        )

    def __dir__(self) -> list[str]:
        names = set(super().__dir__())
        for target in self.__targets__:
            names.update(n for n in vars(importlib.import_module(target)) if not n.startswith("_"))
        return sorted(names)


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(
        self, fullname: str, path: Optional[Sequence[str]] = None, target: Any = None
    ) -> Optional[importlib.machinery.ModuleSpec]:
        if fullname not in MOVED:
            return None
        is_package = any(other.startswith(fullname + ".") for other in MOVED)
        return importlib.machinery.ModuleSpec(fullname, self, is_package=is_package)

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return MovedModule(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        targets = MOVED[module.__name__]
        module.__targets__ = targets  # type: ignore[attr-defined]
        module.__doc__ = f"Moved: the names of this module now live in {', '.join(targets)}."


def install() -> None:
    """Serve the old import paths (idempotent)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.append(_MovedFinder())
