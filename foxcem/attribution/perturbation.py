"""Captum's perturbation family — feature ablation, Shapley value sampling, feature permutation
here, KernelSHAP and LIME in :mod:`foxcem.attribution.surrogate` — for any model one can call: forward passes only, so a NumPy function, an
ONNX Runtime session or an exported program behind :class:`~foxcem.InferenceWrapper` works.

What is perturbed together is a *feature*: Captum's ``feature_mask``, or foxcem's ``segments``
(:mod:`foxcem.core.segments`: ``"grid:K"``, ``"slic:K"``, ``"watershed:K"`` or label maps for
images, blocks of time steps for sequences, feature groups for tables — all channels of a position
in one feature). ``perturbations_per_eval="auto"`` sends as many perturbed copies per forward
pass as keep a pass near the cache-sized row count the URV estimator uses (everything at once on
a GPU). The sampling methods draw from a generator seeded with ``seed``.
"""

from __future__ import annotations

from typing import Any, ClassVar, Optional, Union

import torch
from captum.attr import FeatureAblation, FeaturePermutation, ShapleyValueSampling

from foxcem.attribution.baselines import BaselineLike, resolve_baselines
from foxcem.attribution.captum_call import CaptumCall
from foxcem.attribution.captum_explainer import CaptumExplainer
from foxcem.core.batching import MAX_IMAGE_ROWS, MAX_TABLE_ROWS, auto_batch_size
from foxcem.core.checks import check_positive_int
from foxcem.core.inputs import Inputs
from foxcem.core.registry import register_explainer
from foxcem.core.seeding import check_seed
from foxcem.core.segments import SegmentsLike, resolve_labels

__all__ = [
    "FeatureAblationExplainer",
    "FeaturePermutationExplainer",
    "PerturbationExplainer",
    "ShapleyValueSamplingExplainer",
    "resolve_feature_mask",
]

MaskLike = Union[None, torch.Tensor, tuple]


def _mask_from_segments(segments: SegmentsLike, tensor: torch.Tensor) -> torch.Tensor:
    """Captum's feature mask for one input from a segmentation: labels broadcast over the
    channel dimension (dim 1 of (N, C, …)); a table's labels are its mask."""
    channel = None if tensor.dim() == 2 else 1
    labels = resolve_labels(segments, tensor, channel)
    assert labels is not None
    return labels if channel is None else labels.unsqueeze(1)


def resolve_feature_mask(feature_mask: MaskLike, segments: Any, inputs: Inputs) -> Optional[Any]:
    """The feature mask handed to Captum: ``feature_mask`` itself (checked), the one that
    ``segments`` stands for, or ``None`` (every value its own feature).

    For a tuple of inputs, ``segments`` is one value per input (a tuple); labels of different
    inputs are offset so that no two inputs share a feature.

    Raises:
        ValueError: both given, or a mask that does not broadcast to its input.
        TypeError: a mask that is not an integer tensor.
    """
    if feature_mask is not None and segments is not None:
        raise ValueError("give `feature_mask` or `segments`, not both")
    if segments is not None:
        specs = segments if isinstance(segments, tuple) else (segments,) * len(inputs.tensors)
        if len(specs) != len(inputs.tensors):
            raise ValueError(
                f"`segments` must hold one segmentation per input ({len(inputs.tensors)})"
            )
        masks, offset = [], 0
        for spec, tensor in zip(specs, inputs.tensors):
            mask = _mask_from_segments(spec, tensor) + offset
            offset = int(mask.max()) + 1
            masks.append(mask)
        return tuple(masks) if inputs.is_tuple else masks[0]
    if feature_mask is None:
        return None
    items = feature_mask if isinstance(feature_mask, tuple) else (feature_mask,)
    if len(items) != len(inputs.tensors):
        raise ValueError(
            f"`feature_mask` must hold one mask per input tensor ({len(inputs.tensors)}), "
            f"got {len(items)}"
        )
    for index, (mask, tensor) in enumerate(zip(items, inputs.tensors)):
        name = f"feature_mask[{index}]" if inputs.is_tuple else "feature_mask"
        if (
            not isinstance(mask, torch.Tensor)
            or mask.is_floating_point()
            or mask.dtype == torch.bool
        ):
            raise TypeError(f"`{name}` must be an integer tensor of feature ids")
        try:
            shape = torch.broadcast_shapes(mask.shape, tensor.shape)
        except RuntimeError:
            shape = None
        if shape != tensor.shape or mask.dim() != tensor.dim() or mask.shape[0] not in (
            1, tensor.shape[0]
        ):  # fmt: skip
            raise ValueError(
                f"`{name}` of shape {tuple(mask.shape)} must broadcast to the input's "
                f"{tuple(tensor.shape)} (first dimension 1 or N)"
            )
        if int(mask.min()) < 0:
            raise ValueError(f"`{name}` must hold feature ids >= 0")
    return (
        tuple(m.to(inputs.device) for m in items) if inputs.is_tuple else items[0].to(inputs.device)
    )


def count_features(mask: Optional[Any], inputs: Inputs) -> int:
    """How many features a mask defines (every value one without a mask)."""
    if mask is None:
        return inputs.sample_numel
    items = mask if isinstance(mask, tuple) else (mask,)
    return len(torch.unique(torch.cat([m.reshape(-1) for m in items])))


def perturbations_per_pass(value: Union[int, str], inputs: Inputs, perturbations: int) -> int:
    """``perturbations_per_eval``: an int, or ``"auto"``: perturbed copies of the batch per
    forward pass so that a pass holds about as many rows as URV's cache-sized passes (the whole
    run at once on a GPU)."""
    if isinstance(value, str) and value == "auto":
        total = inputs.num_samples * max(perturbations, 1)
        table = all(t.dim() == 2 for t in inputs.tensors)
        rows = auto_batch_size(
            inputs.sample_numel,
            inputs.device,
            total,
            maximum=MAX_TABLE_ROWS if table else MAX_IMAGE_ROWS,
        )
        return max(1, min(rows // inputs.num_samples, perturbations))
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"`perturbations_per_eval` must be a positive int or 'auto', got {value!r}")
    return check_positive_int(value, "perturbations_per_eval")


class PerturbationExplainer(CaptumExplainer):
    """Shared options of the perturbation methods (Captum's names): ``baselines`` (the value a
    perturbed feature takes: zeros by default, a number, a tensor, ``"random"``),
    ``feature_mask`` or ``segments``, ``perturbations_per_eval`` (``"auto"``),
    ``additional_forward_args``, ``show_progress``, ``threads``, and for the sampling methods
    ``n_samples`` and ``seed``."""

    needs_gradients = False
    accepts_integers = True
    #: Whether the method draws at random (seeded with ``seed``).
    sampling: ClassVar[bool] = False
    #: Whether the method takes ``baselines`` (feature permutation shuffles across the batch).
    takes_baselines: ClassVar[bool] = True

    #: Whether Captum runs the method one example at a time (the surrogates fit one model per
    #: example), so that a pass holds ``perturbations_per_eval`` rows, not that many per sample.
    per_example: ClassVar[bool] = False

    def _work(self, features: int, n_samples: int) -> int:
        """Perturbed copies of each sample the method evaluates: one per feature and sample."""
        return features * n_samples

    def _common(
        self,
        model: Any,
        inputs: Inputs,
        baselines: BaselineLike,
        feature_mask: MaskLike,
        segments: Any,
        additional_forward_args: Any,
        perturbations_per_eval: Union[int, str],
        n_samples: int,
        seed: Optional[int],
    ) -> CaptumCall:
        seed = check_seed(seed)
        mask = resolve_feature_mask(feature_mask, segments, inputs)
        features = count_features(mask, inputs)
        work = self._work(features, n_samples)
        per_pass = perturbations_per_pass(perturbations_per_eval, inputs, work)
        options: dict[str, Any] = {
            "feature_mask": mask,
            "additional_forward_args": additional_forward_args,
            "perturbations_per_eval": per_pass,
        }
        if self.takes_baselines:
            options["baselines"] = resolve_baselines(baselines, inputs, seed)
        call = CaptumCall(self.create_explainer(model), options, seed=seed, random=self.sampling)
        call.passes = 1 + -(-work // per_pass)  # for progress and the long-run estimate
        call.rows = per_pass if self.per_example else per_pass * inputs.num_samples
        return call


@register_explainer("feature_ablation")
class FeatureAblationExplainer(PerturbationExplainer):
    """Feature ablation: each feature (group) replaced by its baseline, the score change as
    its attribution (Captum's ``FeatureAblation``).

    Returns:
        Attributions of the input's shape (a tuple for a tuple of inputs).
    """

    algorithm_name = "Feature Ablation"
    captum_class = FeatureAblation

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        feature_mask: MaskLike = None,
        segments: Any = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: Union[int, str] = "auto",
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        return self._common(model, input_data, baselines, feature_mask, segments,
                            additional_forward_args, perturbations_per_eval, 1, seed)  # fmt: skip


@register_explainer("feature_permutation")
class FeaturePermutationExplainer(PerturbationExplainer):
    """Feature permutation: each feature shuffled across the batch, the score change as its
    attribution (Captum's ``FeaturePermutation``; needs N ≥ 2; seeded).

    Returns:
        Attributions of the input's shape (a tuple for a tuple of inputs).
    """

    algorithm_name = "Feature Permutation"
    captum_class = FeaturePermutation
    sampling = True
    takes_baselines = False

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        feature_mask: MaskLike = None,
        segments: Any = None,
        additional_forward_args: Any = None,
        perturbations_per_eval: Union[int, str] = "auto",
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        if input_data.num_samples < 2:
            raise ValueError(
                "`input_data` must hold at least 2 samples for feature_permutation (it shuffles "
                "each feature across the batch)"
            )
        return self._common(model, input_data, None, feature_mask, segments,
                            additional_forward_args, perturbations_per_eval, 1, seed)  # fmt: skip


@register_explainer("shapley_value_sampling")
class ShapleyValueSamplingExplainer(PerturbationExplainer):
    """Shapley values estimated from ``n_samples`` random feature orderings (Captum's
    ``ShapleyValueSampling``; seeded).

    Returns:
        Attributions of the input's shape (a tuple for a tuple of inputs).
    """

    algorithm_name = "Shapley Value Sampling"
    captum_class = ShapleyValueSampling
    sampling = True

    def _prepare(
        self,
        model: Any,
        input_data: Inputs,
        *,
        baselines: BaselineLike = None,
        feature_mask: MaskLike = None,
        segments: Any = None,
        n_samples: int = 25,
        additional_forward_args: Any = None,
        perturbations_per_eval: Union[int, str] = "auto",
        seed: Optional[int] = 0,
    ) -> CaptumCall:
        n_samples = check_positive_int(n_samples, "n_samples")
        call = self._common(model, input_data, baselines, feature_mask, segments,
                            additional_forward_args, perturbations_per_eval, n_samples, seed)  # fmt: skip
        call.options["n_samples"] = n_samples
        return call
