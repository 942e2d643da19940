"""Faithfulness and sparsity metrics for any attribution, and a Quantus adapter.

* :func:`deletion_curve` / :func:`insertion_curve` (Petsiuk et al. 2018, "RISE"): remove (or
  insert) features in the order of their attribution, most important first, and record the model's
  score for the explained class after every step. The curves are computed by *querying the model*
  on the perturbed inputs — all samples × steps in batched forward passes. A faithful attribution
  gives a low deletion AUC (the score collapses as soon as the top features are removed) and a high
  insertion AUC.
* :func:`completeness_gap`: ``Σ attr − (f_t(x) − f_t(x'))``, the gap in the completeness axiom
  that Integrated Gradients satisfies in the limit.
* :func:`gini_index` and :func:`near_zero_fraction`: sparsity of an attribution.
* :func:`quantus_explain_func`: any foxcem explainer as a Quantus-style
  ``explain_func(model, inputs, targets, **kwargs) -> numpy.ndarray``.

Every metric that runs the model does so under :func:`~foxcem.preserve_model_state` (eval mode,
state restored, global RNG untouched) and without autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional, Union

import numpy as np
import torch
from torch import nn

from foxcem.base import Explainer, split_convergence_delta
from foxcem.checks import TargetLike, check_choice, check_positive_int, check_target, check_tensor
from foxcem.model_state import preserve_model_state
from foxcem.registry import resolve_explainer

__all__ = [
    "PerturbationCurve",
    "perturbation_curve",
    "deletion_curve",
    "insertion_curve",
    "deletion_auc",
    "insertion_auc",
    "completeness_gap",
    "gini_index",
    "near_zero_fraction",
    "sparsity",
    "quantus_explain_func",
]

BaselineValue = Union[int, float, torch.Tensor]

#: Score read from the model: softmax probability of the target, or its raw output (logit).
OUTPUTS = ("probability", "logit")


@dataclass
class PerturbationCurve:
    """A deletion or insertion curve.

    Attributes:
        mode: ``"deletion"`` or ``"insertion"``.
        fractions: (S + 1,) fraction of the features removed (deletion) or inserted (insertion)
            at each step, from 0 to 1.
        scores: (N, S + 1) the model's score for each sample's target class at each step.
        auc: (N,) area under each sample's curve (trapezoidal rule over ``fractions``).
    """

    mode: str
    fractions: torch.Tensor
    scores: torch.Tensor
    auc: torch.Tensor


# ----------------------------------------------------------------------------------------------
# helpers


def _model_dtype_device(model: Any) -> tuple[Optional[torch.dtype], Optional[torch.device]]:
    if isinstance(model, nn.Module):
        for tensor in model.parameters():
            return tensor.dtype, tensor.device
        for tensor in model.buffers():
            return tensor.dtype, tensor.device
    return None, None


def _scores(model: Any, inputs: torch.Tensor) -> torch.Tensor:
    scores = model(inputs)
    if not isinstance(scores, torch.Tensor) or scores.dim() != 2 or scores.shape[0] != len(inputs):
        shape = tuple(scores.shape) if isinstance(scores, torch.Tensor) else type(scores).__name__
        raise ValueError(
            f"the model output must be class scores of shape (N, classes) = ({len(inputs)}, "
            f"classes), got {shape}"
        )
    return scores


def _scores_and_targets(
    model: Any, inputs: torch.Tensor, targets: TargetLike
) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's scores (N, classes) on ``inputs`` and (N,) int64 targets on the input's
    device; ``None`` targets: the model's prediction."""
    scores = _scores(model, inputs)
    resolved = check_target(targets, inputs.shape[0], scores.shape[1], inputs.device, "targets")
    return scores, scores.argmax(dim=1) if resolved is None else resolved


def _check_attributions(attributions: object, inputs: torch.Tensor) -> torch.Tensor:
    """Attributions broadcastable to ``inputs``: (N, *S') with each dim of S' equal to the
    input's or 1; an (N, H, W) map for (N, C, H, W) inputs becomes (N, 1, H, W)."""
    check_tensor(attributions, "attributions")
    assert isinstance(attributions, torch.Tensor)
    if attributions.dim() == inputs.dim() - 1 and inputs.dim() == 4:
        attributions = attributions.unsqueeze(1)
    ok = attributions.dim() == inputs.dim() and attributions.shape[0] == inputs.shape[0]
    if ok:
        ok = all(a in (1, s) for a, s in zip(attributions.shape[1:], inputs.shape[1:]))
    if not ok:
        raise ValueError(
            f"`attributions` must have the input's shape {tuple(inputs.shape)} (or 1 in a "
            f"dimension to share a value, e.g. (N, 1, H, W) per pixel), got "
            f"{tuple(attributions.shape)}"
        )
    return attributions.detach().to(inputs.device)


def _check_baseline(baseline: BaselineValue, inputs: torch.Tensor) -> torch.Tensor:
    """A baseline broadcastable to ``inputs`` (N, *S): a number, or a tensor (N, *S), (1, *S),
    or (*S)."""
    if isinstance(baseline, bool):
        raise TypeError("`baseline` must be a number or a tensor, got bool")
    if isinstance(baseline, (int, float)):
        return torch.tensor(float(baseline), dtype=inputs.dtype, device=inputs.device)
    if not isinstance(baseline, torch.Tensor):
        raise TypeError(f"`baseline` must be a number or a tensor, got {type(baseline).__name__}")
    if baseline.dim() == inputs.dim() - 1:
        baseline = baseline.unsqueeze(0)
    if baseline.dim() != inputs.dim() or baseline.shape[0] not in (1, inputs.shape[0]):
        raise ValueError(
            f"`baseline` must have shape {tuple(inputs.shape)}, (1, ...) or "
            f"{tuple(inputs.shape[1:])}, got {tuple(baseline.shape)}"
        )
    try:
        fits = torch.broadcast_shapes(baseline.shape, inputs.shape) == inputs.shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"`baseline` of shape {tuple(baseline.shape)} does not broadcast to the input's "
            f"shape {tuple(inputs.shape)}"
        )
    return baseline.detach().to(device=inputs.device, dtype=inputs.dtype)


def _prepare_inputs(inputs: object, name: str = "inputs") -> torch.Tensor:
    check_tensor(inputs, name)
    assert isinstance(inputs, torch.Tensor)
    # Inference tensors (e.g. from a Lightning prediction) are read, never written: a copy is
    # only needed to mix them with ordinary tensors outside inference mode.
    return inputs.clone() if inputs.is_inference() else inputs.detach()


# ----------------------------------------------------------------------------------------------
# deletion / insertion


def perturbation_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    *,
    mode: str = "deletion",
    n_steps: int = 20,
    baseline: BaselineValue = 0.0,
    output: str = "probability",
    batch_size: int = 256,
) -> PerturbationCurve:
    """Deletion or insertion curve of ``attributions`` (see :func:`deletion_curve`)."""
    check_choice(mode, "mode", ("deletion", "insertion"))
    check_choice(output, "output", OUTPUTS)
    steps = check_positive_int(n_steps, "n_steps")
    chunk = check_positive_int(batch_size, "batch_size")
    x = _prepare_inputs(inputs)
    with preserve_model_state(model, inputs=x), torch.no_grad():
        attr = _check_attributions(attributions, x)
        base = torch.broadcast_to(_check_baseline(baseline, x), x.shape)
        _, target = _scores_and_targets(model, x, targets)
        n = x.shape[0]
        flat = attr.flatten(1)
        num_features = flat.shape[1]
        # rank[i, f]: position of feature f in sample i's order, most important first (ties keep
        # the features' memory order).
        order = torch.argsort(flat, dim=1, descending=True, stable=True)
        rank = torch.empty_like(order)
        positions = torch.arange(num_features, device=x.device).expand(n, -1)
        rank.scatter_(1, order, positions)
        rank = rank.view(attr.shape)
        counts = torch.round(
            torch.arange(steps + 1, dtype=torch.float64) * (num_features / steps)
        ).long()
        fractions = counts.double() / num_features
        counts = counts.to(x.device)

        # The selected (top-k) features take `chosen`, the others keep `rest`.
        chosen, rest = (base, x) if mode == "deletion" else (x, base)
        shape = (-1,) + (1,) * (x.dim() - 1)
        pairs = n * (steps + 1)
        scores = torch.empty(pairs, dtype=torch.float32, device=x.device)
        for start in range(0, pairs, chunk):
            index = torch.arange(start, min(start + chunk, pairs), device=x.device)
            sample, step = index // (steps + 1), index % (steps + 1)
            selected = rank[sample] < counts[step].view(shape)  # top-k features of each pair
            batch = torch.where(selected, chosen[sample], rest[sample])
            out = _scores(model, batch)
            if output == "probability":
                out = out.float().softmax(dim=1)
            scores[start : start + len(index)] = out.gather(1, target[sample, None])[:, 0].float()
        scores = scores.view(n, steps + 1)
        fractions = fractions.to(device=x.device, dtype=torch.float32)
        auc = torch.trapezoid(scores, fractions, dim=1)
    return PerturbationCurve(mode=mode, fractions=fractions, scores=scores, auc=auc)


def deletion_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    *,
    n_steps: int = 20,
    baseline: BaselineValue = 0.0,
    output: str = "probability",
    batch_size: int = 256,
) -> PerturbationCurve:
    """Deletion curve: remove the most important features first and watch the score fall.

    At step ``s`` (``s = 0 … n_steps``) the ``round(s / n_steps · F)`` features with the largest
    attribution are replaced by ``baseline``; the model scores every perturbed input. Lower AUC
    means a more faithful attribution.

    Args:
        model: maps a batch (M, *S) to class scores (M, classes).
        inputs: (N, *S), e.g. (N, C, H, W), on the model's device.
        attributions: (N, *S') where each dimension of S' equals the input's or is 1 (a value
            shared along it, e.g. (N, 1, H, W) ranks whole pixels); an (N, H, W) map for
            (N, C, H, W) inputs counts as (N, 1, H, W). Each element of the attribution is one
            feature; features are ranked by their signed value, largest first (pass ``attr.abs()``
            to rank by magnitude).
        targets: the class whose score is tracked: an int, a sequence or (N,) tensor per sample,
            or ``None`` for the model's prediction on the unperturbed input.
        n_steps: number of steps ``S`` (the curve has ``S + 1`` points).
        baseline: value of a removed feature: a number, or a tensor (N, *S), (1, *S) or (*S).
        output: ``"probability"`` (softmax of the scores) or ``"logit"`` (raw scores).
        batch_size: perturbed inputs per forward pass (samples × steps are batched together).

    Returns:
        A :class:`PerturbationCurve` with ``fractions`` (S+1,), ``scores`` (N, S+1), ``auc`` (N,).
    """
    return perturbation_curve(
        model,
        inputs,
        attributions,
        targets,
        mode="deletion",
        n_steps=n_steps,
        baseline=baseline,
        output=output,
        batch_size=batch_size,
    )


def insertion_curve(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    *,
    n_steps: int = 20,
    baseline: BaselineValue = 0.0,
    output: str = "probability",
    batch_size: int = 256,
) -> PerturbationCurve:
    """Insertion curve: start from ``baseline`` and insert the most important features first.

    At step ``s`` the ``round(s / n_steps · F)`` features with the largest attribution take their
    input value, the others stay at ``baseline``. Higher AUC means a more faithful attribution.
    Arguments and result as in :func:`deletion_curve`.
    """
    return perturbation_curve(
        model,
        inputs,
        attributions,
        targets,
        mode="insertion",
        n_steps=n_steps,
        baseline=baseline,
        output=output,
        batch_size=batch_size,
    )


def deletion_auc(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    **kwargs: Any,
) -> torch.Tensor:
    """(N,) area under the deletion curve (lower is better); options of :func:`deletion_curve`."""
    return deletion_curve(model, inputs, attributions, targets, **kwargs).auc


def insertion_auc(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    **kwargs: Any,
) -> torch.Tensor:
    """(N,) area under the insertion curve (higher is better); options of
    :func:`insertion_curve`."""
    return insertion_curve(model, inputs, attributions, targets, **kwargs).auc


# ----------------------------------------------------------------------------------------------
# completeness


def completeness_gap(
    model: Callable[[torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    attributions: torch.Tensor,
    targets: TargetLike = None,
    baselines: Optional[BaselineValue] = None,
) -> torch.Tensor:
    """The completeness gap ``Σ attr − (f_t(x) − f_t(x'))`` per sample, on the raw model output.

    Integrated Gradients satisfies completeness in the limit of many steps; the gap is Captum's
    convergence delta, here computable for any attribution (e.g. stored ones).

    Args:
        model: maps (N, *S) to class scores (N, classes).
        inputs: (N, *S) on the model's device.
        attributions: (N, ...) with ``N`` samples (summed over everything but the first dim).
        targets: the explained class (int, sequence, (N,) tensor; ``None``: the prediction).
        baselines: the reference ``x'``: ``None`` (zeros), a number, or a tensor (N, *S),
            (1, *S) or (*S).

    Returns:
        (N,) float tensor, signed (take ``.abs()`` for the size of the gap).
    """
    x = _prepare_inputs(inputs)
    check_tensor(attributions, "attributions")
    if attributions.shape[0] != x.shape[0]:
        raise ValueError(
            f"`attributions` must hold {x.shape[0]} samples like `inputs`, got "
            f"{attributions.shape[0]}"
        )
    with preserve_model_state(model, inputs=x), torch.no_grad():
        base = torch.broadcast_to(
            _check_baseline(0.0 if baselines is None else baselines, x), x.shape
        )
        scores, target = _scores_and_targets(model, x, targets)
        at_input = scores.gather(1, target[:, None])[:, 0]
        at_base = _scores(model, base.contiguous()).gather(1, target[:, None])[:, 0]
        total = attributions.detach().to(x.device).flatten(1).sum(dim=1)
    return total - (at_input - at_base).to(total.dtype)


# ----------------------------------------------------------------------------------------------
# sparsity


def gini_index(attributions: torch.Tensor) -> torch.Tensor:
    """Gini index of ``|attributions|`` per sample (Hurley & Rickard 2009): 0 for a uniform
    attribution, → 1 when all the mass sits on one feature. An all-zero sample scores 0.

    With the magnitudes sorted ascending ``v_1 ≤ … ≤ v_n``:
    ``G = Σ_i (2i − n − 1) · v_i / (n · Σ_i v_i)``.

    Args:
        attributions: (N, ...), one sample per row of the first dimension.

    Returns:
        (N,) float tensor in [0, 1).
    """
    check_tensor(attributions, "attributions")
    values = attributions.detach().flatten(1).abs().double().sort(dim=1).values
    n = values.shape[1]
    weights = 2 * torch.arange(1, n + 1, dtype=torch.float64, device=values.device) - n - 1
    total = values.sum(dim=1)
    gini = (values * weights).sum(dim=1) / (n * total).clamp(min=torch.finfo(torch.float64).tiny)
    return torch.where(total > 0, gini, torch.zeros_like(gini)).float()


def near_zero_fraction(attributions: torch.Tensor, threshold: float = 0.01) -> torch.Tensor:
    """Fraction of features whose magnitude is at most ``threshold`` × the sample's largest one.

    Args:
        attributions: (N, ...).
        threshold: relative threshold in [0, 1].

    Returns:
        (N,) float tensor in [0, 1]; an all-zero sample scores 1.
    """
    check_tensor(attributions, "attributions")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"`threshold` must be a number, got {type(threshold).__name__}")
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"`threshold` must be in [0, 1], got {threshold}")
    values = attributions.detach().flatten(1).abs().float()
    limit = threshold * values.max(dim=1, keepdim=True).values
    return (values <= limit).float().mean(dim=1)


def sparsity(attributions: torch.Tensor, method: str = "gini", **kwargs: Any) -> torch.Tensor:
    """(N,) sparsity of each sample's attribution: ``method="gini"`` (:func:`gini_index`) or
    ``"near_zero"`` (:func:`near_zero_fraction`, ``threshold`` option)."""
    check_choice(method, "method", ("gini", "near_zero"))
    if method == "gini":
        if kwargs:
            raise TypeError(f"gini_index takes no options, got {sorted(kwargs)}")
        return gini_index(attributions)
    return near_zero_fraction(attributions, **kwargs)


# ----------------------------------------------------------------------------------------------
# Quantus adapter


def quantus_explain_func(
    explainer: Union[str, Explainer],
    *,
    device: Union[None, str, torch.device] = None,
    dtype: Optional[torch.dtype] = None,
    **explainer_kwargs: Any,
) -> Callable[..., np.ndarray]:
    """A Quantus-style ``explain_func(model, inputs, targets, **kwargs) -> numpy.ndarray``.

    Quantus calls ``explain_func(model=model, inputs=x_batch, targets=y_batch, **kwargs)`` with
    NumPy batches; the returned function converts them to tensors on ``device``, runs
    ``explainer.calculate_features(model, inputs, targets, **options)`` and returns the
    attributions as a float32 NumPy array (the attribution part only, when the explainer also
    returns a convergence delta).

    Args:
        explainer: a registered name (see :func:`~foxcem.available_explainers`) or an instance.
        device: where to run; ``None``: the model's device (CPU for a parameterless model). A
            ``device`` keyword given to the returned function at call time overrides it.
        dtype: floating dtype of the inputs; ``None``: the model's parameter dtype (float32 for
            a parameterless model).
        **explainer_kwargs: options of ``calculate_features`` (call-time keywords override them).

    Returns:
        ``explain_func(model, inputs, targets=None, **kwargs)``: ``inputs`` a NumPy array or tensor
        (N, C, H, W); ``targets`` an int, a sequence, a NumPy array or tensor of N class indices,
        or ``None`` (the prediction); returns a ``numpy.ndarray`` with the explainer's output
        shape (e.g. (N, C, H, W), (N, 1, H, W) for saliency).
    """
    instance = resolve_explainer(explainer)

    def explain_func(model: Any, inputs: Any, targets: Any = None, **kwargs: Any) -> np.ndarray:
        run_device = kwargs.pop("device", None) or device
        if not isinstance(model, nn.Module) and hasattr(model, "get_model"):
            model = model.get_model()  # a Quantus ModelInterface
        model_dtype, model_device = _model_dtype_device(model)
        target_device = torch.device(run_device or model_device or "cpu")
        target_dtype = dtype or model_dtype or torch.float32
        x = torch.as_tensor(np.asarray(inputs) if not isinstance(inputs, torch.Tensor) else inputs)
        if not x.is_floating_point():
            raise TypeError(f"`inputs` must hold floating values, got {x.dtype}")
        x = x.to(device=target_device, dtype=target_dtype)
        if (
            isinstance(model, nn.Module)
            and model_device is not None
            and model_device != target_device
        ):
            raise ValueError(
                f"the model is on {model_device} but `device` is {target_device}; move the model "
                f"or pass device={str(model_device)!r}"
            )
        if targets is not None and not isinstance(targets, (int, torch.Tensor)):
            targets = torch.as_tensor(np.asarray(targets))
        if isinstance(targets, torch.Tensor):
            targets = targets.long().to(target_device)
            if targets.dim() > 1:
                targets = targets.reshape(-1)
        options = {**explainer_kwargs, **kwargs}
        attributions, _ = split_convergence_delta(
            instance.calculate_features(model, x, targets, **options)
        )
        return attributions.detach().float().cpu().numpy()

    return explain_func
