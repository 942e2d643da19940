"""Deletion and insertion curves (Petsiuk et al. 2018, "RISE") and their areas.

Remove (or insert) features in the order of their attribution, most important first, and record
the model's score for the explained class after every step. The curves are computed by *querying
the model* on the perturbed inputs — all samples × steps in batched forward passes. A faithful
attribution gives a low deletion AUC (the score collapses as soon as the top features are
removed) and a high insertion AUC. The model runs under :func:`~foxcem.preserve_model_state`
and without autograd.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch

from foxcem.core.checks import (
    TargetLike,
    check_choice,
    check_positive_int,
)
from foxcem.core.model_state import preserve_model_state
from foxcem.metrics.common import (
    BaselineValue,
    check_attributions,
    check_baseline,
    class_scores,
    prepare_inputs,
    scores_and_targets,
)

__all__ = [
    "PerturbationCurve",
    "perturbation_curve",
    "deletion_curve",
    "insertion_curve",
    "deletion_auc",
    "insertion_auc",
]

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
    x = prepare_inputs(inputs)
    with preserve_model_state(model, inputs=x), torch.no_grad():
        attr = check_attributions(attributions, x)
        base = torch.broadcast_to(check_baseline(baseline, x), x.shape)
        _, target = scores_and_targets(model, x, targets)
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
            out = class_scores(model, batch)
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
