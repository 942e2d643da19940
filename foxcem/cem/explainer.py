"""CEMExplainer: the Contrastive Explanation Method behind foxcem's Explainer contract."""

from __future__ import annotations

from typing import Any, Optional, Union

import torch

from foxcem.cem.generator import Callback, ExplanationGenerator
from foxcem.cem.gradients import AutogradGradient, URVGradientEstimator
from foxcem.cem.loss import CEMLoss, check_mode
from foxcem.cem.optimizers import AdaExpGrad, AoExpGrad
from foxcem.core.checks import TargetLike, check_choice, model_device
from foxcem.core.explainer import Explainer
from foxcem.core.registry import register_explainer

__all__ = ["CEMExplainer"]

GRADIENTS = {"autograd": AutogradGradient, "urv": URVGradientEstimator}
OPTIMIZERS = {"aoexpgrad": AoExpGrad, "adaexpgrad": AdaExpGrad}

#: Defaults per mode. l1 = l2 = 0.5, η = 1 are the older library's optimizer defaults; on the
#: digits CNN (logits, inputs in [0, 1]) they flip (PN) / keep (PP) the prediction of every one of
#: 32 test digits in 60-300 iterations with autograd or URV gradients, using about a third of the
#: pixels. l1 ≥ 2 starts losing PP successes there. κ is the logit margin asked for: 5 for a
#: clear flip, 2 for a PP that keeps the class without needing most of the digit.
MODE_DEFAULTS: dict[str, dict[str, float]] = {
    "PN": {"c": 1.0, "K": 5.0, "l1": 0.5, "l2": 0.5, "eta": 1.0},
    "PP": {"c": 1.0, "K": 2.0, "l1": 0.5, "l2": 0.5, "eta": 1.0},
}


@register_explainer("cem")
class CEMExplainer(Explainer):
    """Contrastive explanations: pertinent negatives (PN) and positives (PP), batched.

    ``calculate_features(model, x, pred_label_idx=None, mode="PN", ...)`` returns δ with the
    shape of ``x``: for PN the perturbation that, added to x, changes the prediction away from the
    explained class; for PP the sparse part of x (0 ≤ δ ≤ x elementwise by default) that alone
    keeps the prediction. The explained class is ``pred_label_idx`` (``None``: the prediction).

    The optimisation (:class:`ExplanationGenerator`) minimises, per sample,
    ``CEMLoss(δ) + l1·‖δ‖₁ + (l2/2)·‖δ‖²₂`` with AoExpGrad (or AdaExpGrad), using the exact
    gradient (``gradient="autograd"``) or the batched black-box URV estimate (``"urv"``). All
    randomness comes from a ``torch.Generator`` on the input's device seeded with ``seed``, so a
    call is reproducible. The model is in eval mode during the call and left exactly as it was.
    Details of the last call (loss/attack/success per sample, histories) are kept in
    ``explainer.meta_data``.
    """

    algorithm_name = "Contrastive Explanation Method"
    input_ndim = None

    def __init__(self) -> None:
        #: meta data of the last :meth:`calculate_features` call (see ``ExplanationGenerator.run``).
        self.meta_data: dict[str, Any] = {}

    def create_explainer(  # type: ignore[override]
        self,
        model: Any,
        *,
        mode: str = "PN",
        gradient: str = "autograd",
        optimizer: str = "aoexpgrad",
        num_iter: int = 300,
        c: Union[float, torch.Tensor, None] = None,
        gamma: float = 0.0,
        K: Optional[float] = None,
        AE: Any = None,
        pn_target: TargetLike = None,
        lower: Union[float, torch.Tensor, None] = None,
        upper: Union[float, torch.Tensor, None] = None,
        feature_range: Optional[tuple[Any, Any]] = None,
        add_only: bool = False,
        channels_first: bool = True,
        smooth: bool = False,
        l1: Optional[float] = None,
        l2: Optional[float] = None,
        eta: Optional[float] = None,
        num_directions: int = 100,
        mu: Optional[float] = None,
        batch_size: Optional[int] = None,
        two_sided: bool = False,
        seed: Optional[int] = 0,
        device: Union[str, torch.device, None] = None,
        start_noise: float = 0.0,
        save_freq: Optional[int] = None,
        early_stop: bool = False,
        keep_best: bool = False,
        history: bool = True,
        progress: bool = False,
        callback: Optional[Callback] = None,
        verbose: Union[bool, int] = False,
    ) -> ExplanationGenerator:
        """The configured :class:`ExplanationGenerator` (see :meth:`calculate_features`).

        ``device`` is where the seeded generators live (default: the model's device, or CPU).
        """
        mode = check_mode(mode)
        check_choice(gradient, "gradient", list(GRADIENTS))
        check_choice(optimizer, "optimizer", list(OPTIMIZERS))
        defaults = MODE_DEFAULTS[mode]
        if seed is None:  # derived from torch's global RNG state (forked: the stream is untouched)
            seed = int(torch.randint(0, 2**62, (1,)))
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int or None, got {type(seed).__name__}")
        if device is None:
            device = model_device(model) or torch.device("cpu")
        device = torch.device(device)
        loss_kwargs: dict[str, Any] = dict(
            mode=mode,
            c=defaults["c"] if c is None else c,
            gamma=gamma,
            K=defaults["K"] if K is None else K,
            AE=AE,
            pn_target=pn_target,
            lower=lower,
            upper=upper,
            channels_first=channels_first,
            smooth=smooth,
        )
        if mode == "PN":
            loss_kwargs.update(feature_range=feature_range, add_only=add_only)
        elif feature_range is not None or add_only:
            raise ValueError("`feature_range` and `add_only` apply to mode='PN' only")
        optimizer_kwargs = dict(
            eta=defaults["eta"] if eta is None else eta,
            l1=defaults["l1"] if l1 is None else l1,
            l2=defaults["l2"] if l2 is None else l2,
        )
        gradient_kwargs: dict[str, Any] = {}
        if gradient == "urv":
            gradient_kwargs = dict(
                num_directions=num_directions,
                mu=mu,
                batch_size=batch_size,
                two_sided=two_sided,
                generator=torch.Generator(device=device).manual_seed(seed),
            )
        return ExplanationGenerator(
            loss=CEMLoss,
            optimizer=OPTIMIZERS[optimizer],
            gradient=GRADIENTS[gradient],
            loss_kwargs=loss_kwargs,
            optimizer_kwargs=optimizer_kwargs,
            gradient_kwargs=gradient_kwargs,
            num_iter=num_iter,
            save_freq=save_freq,
            verbose=verbose,
            early_stop=early_stop,
            keep_best=keep_best,
            history=history,
            progress=progress,
            callback=callback,
            start_noise=start_noise,
            generator=torch.Generator(device=device).manual_seed(seed + 1),
        )

    def calculate_features(  # type: ignore[override]
        self,
        model: Any,
        input_data: torch.Tensor,
        pred_label_idx: TargetLike = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        """Contrastive explanation δ of ``model`` on ``input_data``, shaped like the input.

        Args:
            model: a module or callable returning class scores (N, classes), logits preferred.
            input_data: (N, C, H, W) (or (N, H, W, C) with ``channels_first=False``, or any
                (N, features…)), on the model's device.
            pred_label_idx: the explained class: int, (N,) tensor or list; ``None``: prediction.
            mode: ``"PN"`` (default) or ``"PP"``.
            gradient: ``"autograd"`` (default, white box) or ``"urv"`` (black box, batched).
            optimizer: ``"aoexpgrad"`` (default) or ``"adaexpgrad"``.
            num_iter: optimizer steps (default 300).
            c, K: attack weight (float or (N,) tensor) and confidence κ; defaults per mode
                (:data:`MODE_DEFAULTS`).
            gamma, AE: autoencoder term weight and autoencoder (default: none).
            pn_target: PN only: the class to move towards.
            lower, upper: bounds on δ (defaults: PP 0 ≤ δ ≤ x; PN x + δ in ``feature_range``).
            feature_range: PN only: (lo, hi) of valid input values (default: each sample's own
                min and max).
            add_only: PN only: δ ≥ 0.
            channels_first: False for (N, H, W, C) inputs; the model is called in that layout.
            smooth: smooth hinge.
            l1, l2, eta: regulariser weights l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ and step scale; defaults
                per mode.
            num_directions, mu, batch_size, two_sided: URV settings (q = 100, μ_t = 1/√(t·d),
                no row limit per model call, one-sided).
            seed: seeds the generators on the input's device (default 0; ``None``: derived from
                torch's global RNG state, which the call leaves unchanged).
            start_noise: PN only: std of a Gaussian start (default 0: zeros).
            save_freq, early_stop, keep_best, history, progress, callback, verbose: see
                :class:`ExplanationGenerator`.

        Returns:
            δ, a detached tensor of the input's shape and dtype.
        """
        return super().calculate_features(model, input_data, pred_label_idx, **kwargs)

    def _attribute(
        self, model: Any, input_data: torch.Tensor, target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        if input_data.dim() < 2:
            raise ValueError(
                f"`input_data` must be a batch (N, ...), got shape {tuple(input_data.shape)}"
            )
        if "device" in kwargs:
            raise TypeError("`device` is taken from `input_data`; do not pass it")
        generator = self.create_explainer(model, device=input_data.device, **kwargs)
        savepoints, meta = generator.run(image=input_data, inference_call=model, target=target)
        self.meta_data = meta
        return next(reversed(savepoints.values()))
