"""The CEM loss: one value per sample, for pertinent positives (PP) and negatives (PN).

"Explanations based on the Missing: Towards Contrastive Explanations with
Pertinent Negatives", NeurIPS 2018 (arXiv 1802.07623). With ``t`` the explained class,
``top_other(p) = max_{i≠t} p_i`` and ``v`` the no-information value (:mod:`foxcem.cem.bounds`)::

    PP: c·max(top_other(f(v+δ)) − f_t(v+δ), −κ)       + γ·‖v+δ − AE(v+δ)‖²₂
    PN: c·max(f_t(x+δ) − top_other(f(x+δ)), −κ)       + γ·‖x+δ − AE(x+δ)‖²₂

(with ``pn_target`` j, PN uses f_j instead of top_other). The elastic-net terms are not part of
the loss: the optimizer applies them in its proximal step. Scores are accumulated in float32 (or
wider) whatever the model computes in, so half-precision models do not lose the loss's resolution.

Probabilities are read as log-probabilities (:mod:`foxcem.cem.scores`).

On a table (N, F) δ is optimised in units of each feature's range (``hi − lo``): features measured
in millimetres and in thousands weigh the same in ‖δ‖₁ and in the black-box estimator's random
directions. δ is always returned in the input's units.
"""

from __future__ import annotations

from typing import Callable, Optional, Union

import torch
import torch.nn.functional as F

from foxcem.cem.arguments import (
    check_autoencoder,
    check_c,
    check_pn_target,
    check_reconstruction,
)
from foxcem.cem.bounds import BoundLike, NoInfoLike, RangeLike, resolve_box
from foxcem.cem.evaluation import (
    MODES,
    CEMEvaluation,
    SampleIndex,
    accumulation_dtype,
    check_delta_rows,
    check_mode,
    select_rows,
)
from foxcem.cem.scores import ClassMargin, ScoreReading
from foxcem.cem.segments import SegmentsLike, SegmentSpace, resolve_segments
from foxcem.core.checks import (
    TargetLike,
    check_bool,
    check_finite_float,
    check_model,
    check_scores,
    check_target,
    check_tensor,
)
from foxcem.core.explainer import predict_scores

__all__ = ["CEMLoss", "CEMEvaluation", "check_mode", "MODES"]  # the last three re-exported


class CEMLoss:
    """The per-sample CEM loss for a batch ``x`` of N samples.

    Args:
        model: any callable mapping a batch (M, …) laid out like ``x`` to class scores
            (M, classes): logits (as in the paper) or probabilities. It is called as is: put it in
            eval mode yourself (``CEMExplainer`` does).
        x: the inputs explained, (N, …): (N, C, H, W) with ``channels_first=True``, (N, H, W, C)
            otherwise, or any (N, features…) tensor.
        mode: ``"PP"`` (pertinent positive: δ is the kept part of x) or ``"PN"`` (pertinent
            negative: δ is added to x).
        c: weight of the attack term, a float or a (N,) tensor (one per sample; the c search
            changes it with :meth:`set_c`).
        gamma: weight of the autoencoder term (needs ``AE``).
        K: the confidence κ ≥ 0 of the hinge ``max(a, −κ)``.
        AE: optional autoencoder, a callable mapping (M, …) to (M, …) in the layout of ``x``.
        pn_target: PN only: the class j to move towards (int, (N,) tensor or list); the attack
            uses f_j instead of the top other class, and success means argmax = j.
        lower, upper: bounds on δ, a scalar or a tensor broadcastable to x (a length-C 1-D tensor
            is taken per channel); they replace the defaults of :mod:`foxcem.cem.bounds`.
        channels_first: whether the channel axis of ``x`` is dim 1 (True) or the last dim.
            The model and the autoencoder are always called in the layout of ``x``; the flag
            only places per-channel bounds and values.
        smooth: replace the hinge by ``softplus(a + κ) − κ`` (computed stably).
        target: the explained class t per sample (int, (N,) tensor or list); ``None``: the
            model's prediction on x.
        feature_range: ``(lo, hi)`` of valid input values, floats or tensors broadcastable to x
            (per channel allowed); reference data (M, …) shaped like the samples (e.g. the
            training rows): each feature's min and max over them. ``None``: the batch's
            smallest and largest value.
        add_only: PN only: δ ≥ 0 (features can be added, never removed).
        no_info_value: the value that carries no information: ``"auto"`` (default: ``"min"``
            for images and sequences; for tables the median for PP and ``None`` for PN, see
            :func:`~foxcem.cem.bounds.auto_no_info_value`), ``"min"`` (the feature range's lower
            end: black for images), ``"median"`` or ``"mean"`` (per feature, over
            the reference data of ``feature_range`` or else the batch: for tables), a number,
            or a tensor broadcastable to x (e.g.
            :func:`~foxcem.cem.bounds.fit_no_info_value` of training data). PN moves features
            away from it only; PP keeps part of ``x − v``. ``None``: PN moves either way inside
            the feature range and PP keeps part of x itself (the behaviour before this value
            existed).
        segments: optimise one value per segment and channel instead of per pixel (see
            :mod:`foxcem.cem.segments`): a label map (N, H, W), ``"grid:K"`` or ``"slic:K"``;
            for a table, feature groups (F,) that change together. δ then has shape (N, C, S);
            :meth:`to_input_space` expands it to the input's positions.
        scores: what the model answers: ``"auto"`` (default: probabilities when every row of
            the answer on x lies in [0, 1] and sums to 1, else logits), ``"logits"`` or
            ``"probabilities"`` (read as log-probabilities, so that κ is a logit margin).

    Calling the loss::

        loss(delta)                # delta (N, …) -> (N,)
        loss(delta)                # delta (q, N, …) -> (q, N): q candidates per sample, one call
        loss(delta, samples=idx)   # delta (…, n, …) for the samples x[idx] -> (…, n)

    Raises:
        ValueError: naming the argument, for an unknown ``mode``, bounds of the wrong shape,
            ``pn_target`` equal to the explained class, a model output that is not (N, classes),
            an autoencoder output of another shape than its input.
    """

    def __init__(
        self,
        model: Callable[[torch.Tensor], torch.Tensor],
        x: torch.Tensor,
        mode: str = "PN",
        c: Union[float, torch.Tensor] = 1.0,
        gamma: float = 0.0,
        K: float = 10.0,
        AE: Optional[Callable[[torch.Tensor], torch.Tensor]] = None,
        pn_target: TargetLike = None,
        lower: BoundLike = None,
        upper: BoundLike = None,
        channels_first: bool = True,
        smooth: bool = False,
        *,
        target: TargetLike = None,
        feature_range: RangeLike = None,
        add_only: bool = False,
        no_info_value: NoInfoLike = "auto",
        segments: SegmentsLike = None,
        scores: str = "auto",
    ) -> None:
        check_model(model)
        check_tensor(x, "x")
        if x.dim() < 2:
            raise ValueError(
                f"`x` must be a batch (N, ...) with N samples, got shape {tuple(x.shape)}"
            )
        self.mode = check_mode(mode)
        #: the attack value: f_t − f_j (PN) or f_j − f_t (PP).
        self.margin = ClassMargin(1.0 if self.mode == "PN" else -1.0)
        self.model = model
        self.x = x.detach()
        self.channels_first = check_bool(channels_first, "channels_first")
        self.channel_dim = 1 if self.channels_first else x.dim() - 1
        self.smooth = check_bool(smooth, "smooth")
        self.gamma = check_finite_float(gamma, "gamma", minimum=0.0)
        self.K = check_finite_float(K, "K", minimum=0.0)
        if AE is not None and not callable(AE):
            raise TypeError(f"`AE` must be callable, got {type(AE).__name__}")
        if self.gamma > 0 and AE is None:
            raise ValueError("`AE` is required when `gamma` > 0")
        self.AE = AE
        self.c = check_c(c, self.x)
        #: dtype of the model's scores in the last evaluation (the precision it computes in).
        self.score_dtype: Optional[torch.dtype] = None

        answer = predict_scores(model, self.x)
        self.num_classes = answer.shape[1]
        #: how the model's answers are read: as logits, or probabilities through log p.
        self.reading = ScoreReading(scores, answer)
        if self.num_classes < 2:
            raise ValueError(
                f"the model output must have at least 2 classes, got shape {tuple(answer.shape)}"
            )
        n = x.shape[0]
        resolved = check_target(target, n, self.num_classes, device=x.device, name="target")
        self.target = answer.argmax(dim=1) if resolved is None else resolved
        self.pn_target = check_pn_target(pn_target, self.mode, self.target, self.num_classes)
        if check_bool(add_only, "add_only") and self.mode != "PN":
            raise ValueError("`add_only` applies to mode='PN' only")

        box = resolve_box(
            self.mode, self.x, self.channel_dim, feature_range, no_info_value, lower, upper,
            bool(add_only),
        )  # fmt: skip
        self.feature_range, self.no_info, self.lower, self.upper = box
        #: what the model sees for δ = 0: v (PP) or x (PN).
        self.base = self._base()
        #: a table's δ is optimised in units of each feature's range (``None``: input units).
        self.unit: Optional[torch.Tensor] = None
        if self.x.dim() == 2:
            lo, hi = self.feature_range
            self.unit = torch.where(hi > lo, hi - lo, torch.ones_like(hi))
            self.lower, self.upper = self.lower / self.unit, self.upper / self.unit
        self.segments = resolve_segments(segments, self.x, self.channel_dim)
        #: δ in segment space (``None``: δ has the input's shape).
        self.space = None
        if self.segments is not None:
            unit = 1.0 if self.unit is None else self.unit
            self.space = SegmentSpace(
                self.mode, self.segments, self.x / unit, self.base / unit, self.lower, self.upper
            )
            self.lower, self.upper = self.space.lower, self.space.upper
        if self.AE is not None:
            check_autoencoder(self.AE, self.base[:2])

    # ------------------------------------------------------------------ setup helpers
    def set_c(self, c: Union[float, torch.Tensor]) -> None:
        """Change the attack weight (a float, or one value per sample, (N,))."""
        self.c = check_c(c, self.x)

    def _base(self) -> torch.Tensor:
        if self.mode == "PN":
            return self.x
        return self.no_info if self.no_info is not None else torch.zeros_like(self.x)

    # ------------------------------------------------------------------ evaluation
    @property
    def num_samples(self) -> int:
        """N, the number of samples explained."""
        return self.x.shape[0]

    @property
    def input_scale(self) -> float:
        """The size of the values the model sees: the feature range's largest magnitude."""
        lo, hi = self.feature_range
        magnitude = torch.maximum(lo.abs(), hi.abs())
        if self.unit is not None:  # δ is in units of each feature's range
            magnitude = magnitude / self.unit
        return max(float(magnitude.max()), 1e-12)

    @property
    def delta_shape(self) -> torch.Size:
        """The shape of one sample's δ: the input's, or (C, S) in segment space."""
        if self.segments is None:
            return self.x.shape[1:]
        return torch.Size(self.segments.shape(self.x))

    def start(
        self, noise_std: float = 0.0, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """The starting δ₀ (N, …): PP: everything kept (δ = x − v, or 1 per segment); PN: zeros,
        or N(0, noise_std²) noise drawn from ``generator`` (on x's device); clipped to the bounds."""
        shape = (self.x.shape[0],) + tuple(self.delta_shape)
        like = dict(device=self.x.device, dtype=self.x.dtype)
        if self.mode == "PP":
            kept = self.x - self.base if self.unit is None else (self.x - self.base) / self.unit
            delta = kept if self.segments is None else torch.ones(shape, **like)
        elif noise_std > 0:
            delta = noise_std * torch.randn(shape, generator=generator, **like)
        else:
            delta = torch.zeros(shape, **like)
        return torch.minimum(torch.maximum(delta, self.lower), self.upper)

    def to_input_space(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """δ as a perturbation of the input's shape: itself, or segment values (*L, n, C, S)
        expanded to their pixels (PP: the kept fraction of x − v; PN: clipped to the box), in the
        input's units."""
        if self.space is not None:
            delta = self.space.to_input(delta, samples)
        return delta if self.unit is None else delta * select_rows(self.unit, samples)

    def model_input(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """What the model sees for ``delta``: v + δ (PP) or x + δ (PN), in the input's shape."""
        return select_rows(self.base, samples) + self.to_input_space(delta, samples)

    def evaluate(self, delta: torch.Tensor, samples: SampleIndex = None) -> CEMEvaluation:
        """Loss, attack value, success and prediction of ``delta`` in one model call.

        Args:
            delta: (*L, n, …) with the sample shape of x; n = N, or the number of samples
                selected by ``samples``.
            samples: ``None`` (all N samples, in order), or an index tensor / slice selecting
                the samples of x that the n rows of ``delta`` belong to (repeats allowed).

        Returns:
            A :class:`CEMEvaluation` whose fields have shape (*L, n); loss and attack in float32
            or wider.
        """
        target = select_rows(self.target, samples)
        lead, rows = check_delta_rows(delta, self.delta_shape, target.shape[0])
        inputs = self.model_input(delta, samples).reshape((rows,) + self.x.shape[1:])
        raw = check_scores(self.model(inputs), rows, device=inputs.device)
        self.score_dtype = raw.dtype
        scores = raw.to(accumulation_dtype(raw.dtype)).reshape(lead + (-1,))
        scores = self.reading(scores)
        target = target.expand(lead)
        pn_target = None
        if self.pn_target is not None:
            pn_target = select_rows(self.pn_target, samples).expand(lead)
        attack = self.margin(scores, target, pn_target, reuse=samples is None)
        if self.smooth:
            hinge = F.softplus(attack + self.K) - self.K
        else:
            hinge = torch.clamp(attack, min=-self.K)
        loss = select_rows(self.c, samples).to(hinge.dtype) * hinge
        if self.gamma > 0 and self.AE is not None:
            reconstruction = check_reconstruction(self.AE(inputs), inputs)
            error = (inputs - reconstruction).reshape(rows, -1).to(loss.dtype).pow(2).sum(dim=1)
            loss = loss + self.gamma * error.reshape(lead)
        prediction = scores.argmax(dim=-1)
        if self.mode == "PP":
            success = prediction == target
        elif self.pn_target is not None:
            success = prediction == pn_target
        else:
            success = prediction != target
        return CEMEvaluation(loss, attack, success, prediction)

    def __call__(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """The loss per sample: ``delta`` (*L, n, …) -> (*L, n); see :meth:`evaluate`."""
        return self.evaluate(delta, samples).loss

    def feasible(self, evaluation: CEMEvaluation) -> torch.Tensor:
        """Whether the attack holds with margin κ (bool, the evaluation's shape): the
        explanation succeeds and its hinge is saturated (a ≤ −κ)."""
        return evaluation.success & (evaluation.attack <= -self.K)

    def attack(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """The attack value a per sample (before the hinge): the loss is saturated at a ≤ −κ."""
        with torch.no_grad():
            return self.evaluate(delta, samples).attack

    def success(self, delta: torch.Tensor, samples: SampleIndex = None) -> torch.Tensor:
        """Whether each explanation holds, bool (*L, n): PP keeps the class, PN changes it."""
        with torch.no_grad():
            return self.evaluate(delta, samples).success

    def __repr__(self) -> str:
        return (
            f"CEMLoss(mode={self.mode!r}, N={self.num_samples}, K={self.K}, "
            f"gamma={self.gamma}, smooth={self.smooth})"
        )
