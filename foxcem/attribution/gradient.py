"""Plain gradient saliency ``∂f_t/∂x`` (the MindSpore ``Gradient`` explainer) over Captum.

MindSpore hooks every eval-mode BatchNorm to correct its backward pass; in PyTorch an eval-mode
BatchNorm is an affine map with the running statistics and autograd differentiates it exactly, so
no hook is needed (the tests compare with finite differences and the closed form).
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from captum.attr import Saliency

from foxcem.attribution.captum_explainer import CaptumCall, CaptumExplainer
from foxcem.core.checks import check_choice
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer

__all__ = ["GradientCVExplainer", "abs_max"]

#: Aggregations of the gradient over channels.
AGGREGATIONS = (None, "abs_max")


def abs_max(gradients: torch.Tensor) -> torch.Tensor:
    """The saliency map ``max_c |g[:, c]|``: (N, C, H, W) -> (N, 1, H, W)."""
    return gradients.abs().amax(dim=1, keepdim=True)


@register_explainer("gradient")
class GradientCVExplainer(CaptumExplainer):
    """Gradient of the target score with respect to the input.

    Options of :meth:`~foxcem.Explainer.calculate_features`:

    * ``aggregate`` — ``None`` (default): the raw signed gradient ``∂f_t/∂x`` of shape
      (N, C, H, W); ``"abs_max"``: the saliency map ``max_c |∂f_t/∂x_c|`` of shape (N, 1, H, W).
    * ``additional_forward_args`` — extra arguments passed to the model after the input.

    Returns:
        (N, C, H, W) gradients, or the (N, 1, H, W) map with ``aggregate="abs_max"``.
    """

    algorithm_name = "Gradient"
    captum_class = Saliency

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        aggregate: Optional[str] = None,
        additional_forward_args: Any = None,
    ) -> CaptumCall:
        check_choice(aggregate, "aggregate", AGGREGATIONS)
        if aggregate and any(t.dim() < 3 for t in input_data.tensors):
            raise ValueError(
                "`aggregate='abs_max'` reduces the channels of (N, C, …) inputs; for inputs of "
                f"shape {input_data.shapes()} leave it None"
            )

        def finish(attributions: Any, _: Inputs) -> Any:
            if isinstance(attributions, tuple):
                return tuple(abs_max(a) for a in attributions)
            return abs_max(attributions)

        return CaptumCall(
            self.create_explainer(model),
            {"abs": False, "additional_forward_args": additional_forward_args},
            finish=finish if aggregate else None,
        )
