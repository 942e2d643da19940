"""CEMExplainer: the Contrastive Explanation Method behind foxcem's Explainer contract."""

from __future__ import annotations

import inspect
import threading
from typing import Any, Optional, Union

import torch

from foxcem.cem.defaults import MODE_DEFAULTS, mode_defaults, size_defaults
from foxcem.cem.generator import Callback, ExplanationGenerator
from foxcem.cem.gradient_source import AutogradGradient
from foxcem.cem.loss import CEMLoss, check_mode
from foxcem.cem.optimizers import AdaExpGrad, AoExpGrad
from foxcem.cem.urv import URVGradientEstimator, check_urv_options
from foxcem.core.checks import (
    TargetLike,
    check_bool,
    check_choice,
    check_options,
    check_positive_int,
)
from foxcem.core.explainer import Explainer
from foxcem.core.inputs import Inputs
from foxcem.core.progress import wants_progress
from foxcem.core.registry import register_explainer
from foxcem.core.seeding import check_seed, fresh_seed
from foxcem.core.threads import ThreadsLike

__all__ = ["CEMExplainer", "MODE_DEFAULTS"]

GRADIENTS = {"autograd": AutogradGradient, "urv": URVGradientEstimator}
OPTIMIZERS = {"aoexpgrad": AoExpGrad, "adaexpgrad": AdaExpGrad}


@register_explainer("cem")
class CEMExplainer(Explainer):
    """Contrastive explanations: pertinent negatives (PN) and positives (PP), batched.

    ``calculate_features(model, x, pred_label_idx=None, mode="PN", ...)`` returns δ with the
    shape of ``x``: for PN the perturbation that, added to x, changes the prediction away from the
    explained class, adding only what x lacks (moving features away from the no-information value,
    black for images); for PP the sparse part of x that alone keeps the prediction. The explained
    class is ``pred_label_idx`` (``None``: the prediction).

    The optimisation (:class:`~foxcem.cem.ExplanationGenerator`) minimises, per sample,
    ``CEMLoss(δ) + l1·‖δ‖₁ + (l2/2)·‖δ‖²₂`` with AoExpGrad (or AdaExpGrad), using the exact
    gradient (``gradient="autograd"``) or the batched black-box URV estimate (``"urv"``), in
    ``c_steps`` rounds of a per-sample search over c, and returns per sample the feasible δ (the
    attack holds with margin κ) with the smallest regulariser. A sample without one is reported:
    ``explainer.meta_data["found"]`` is False for it and a warning says how many — its δ is not an
    explanation. Randomness is counter-based and seeded (``seed``), so a call is reproducible. The
    model is in eval mode during the call and left exactly as it was. Details of the last call
    (found/loss/attack/success per sample, c, histories, model calls) are in
    ``explainer.meta_data``.
    """

    algorithm_name = "Contrastive Explanation Method"
    input_ndim = None
    needs_gradients = False  # the exact gradient is checked when gradient="autograd" is asked for

    def __init__(self) -> None:
        self._local = threading.local()

    @property
    def meta_data(self) -> dict[str, Any]:
        """Meta data of this thread's last :meth:`calculate_features` call (see
        ``ExplanationGenerator.run``): per thread, so that two threads explaining with one
        explainer each read their own."""
        return getattr(self._local, "meta_data", {})

    @meta_data.setter
    def meta_data(self, value: dict[str, Any]) -> None:
        self._local.meta_data = value

    def create_explainer(  # type: ignore[override]
        self,
        model: Any,
        *,
        mode: str = "PN",
        gradient: str = "autograd",
        optimizer: str = "aoexpgrad",
        num_iter: Optional[int] = None,
        c_steps: Optional[int] = None,
        c: Union[float, torch.Tensor, None] = None,
        gamma: float = 0.0,
        K: Optional[float] = None,
        AE: Any = None,
        pn_target: TargetLike = None,
        lower: Union[float, torch.Tensor, None] = None,
        upper: Union[float, torch.Tensor, None] = None,
        feature_range: Any = None,
        no_info_value: Any = "auto",
        add_only: bool = False,
        segments: Any = None,
        scores: str = "auto",
        channels_first: bool = True,
        smooth: bool = False,
        l1: Optional[float] = None,
        l2: Optional[float] = None,
        eta: Optional[float] = None,
        zero_tol: float = 1e-3,
        precision: Optional[str] = None,
        compile: bool = False,
        num_directions: int = 100,
        mu: Optional[float] = None,
        batch_size: Union[int, str, None] = "auto",
        two_sided: Union[bool, str] = "auto",
        seed: Optional[int] = 0,
        start_noise: float = 0.0,
        save_freq: Optional[int] = None,
        early_stop: bool = False,
        keep_best: bool = True,
        sparsify: bool = True,
        pn_start: str = "auto",
        history: bool = True,
        progress: Union[bool, str] = "auto",
        callback: Optional[Callback] = None,
        verbose: Union[bool, int] = False,
        threads: ThreadsLike = "auto",
        device: Union[str, torch.device, None] = None,
    ) -> ExplanationGenerator:
        """The configured :class:`~foxcem.cem.ExplanationGenerator` (see
        :meth:`calculate_features`). ``device`` is where the start noise is drawn (default:
        the CPU; ``calculate_features`` uses the input's device)."""
        mode = check_mode(mode)
        check_choice(gradient, "gradient", list(GRADIENTS))
        check_choice(optimizer, "optimizer", list(OPTIMIZERS))
        defaults = mode_defaults(mode, gamma)
        seed = fresh_seed() if check_seed(seed) is None else seed
        assert seed is not None
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
            feature_range=feature_range,
            no_info_value=no_info_value,
            add_only=add_only,
            segments=segments,
            scores=scores,
        )
        optimizer_kwargs = dict(
            eta=defaults["eta"] if eta is None else eta,
            l1=defaults["l1"] if l1 is None else l1,
            l2=defaults["l2"] if l2 is None else l2,
            zero_tol=zero_tol,
            compile=check_bool(compile, "compile"),
        )
        gradient_kwargs: dict[str, Any] = {"precision": precision, "compile": compile}
        # URV's options are checked whatever the gradient: a bad value is never silently unused.
        check_urv_options(num_directions, mu, batch_size, two_sided)
        if gradient == "urv":
            gradient_kwargs.update(
                num_directions=num_directions,
                mu=mu,
                batch_size=batch_size,
                two_sided=two_sided,
                seed=seed,
            )
        device = torch.device(device) if device is not None else torch.device("cpu")
        num_iter = check_positive_int(
            int(defaults["num_iter"]) if num_iter is None else num_iter, "num_iter"
        )
        c_steps = check_positive_int(
            int(defaults["c_steps"]) if c_steps is None else c_steps, "c_steps"
        )
        return ExplanationGenerator(
            loss=CEMLoss,
            optimizer=OPTIMIZERS[optimizer],
            gradient=GRADIENTS[gradient],
            loss_kwargs=loss_kwargs,
            optimizer_kwargs=optimizer_kwargs,
            gradient_kwargs=gradient_kwargs,
            num_iter=num_iter,
            c_steps=c_steps,
            save_freq=save_freq,
            verbose=verbose,
            early_stop=early_stop,
            keep_best=keep_best,
            history=history,
            progress=wants_progress(progress, num_iter * c_steps),
            callback=callback,
            start_noise=start_noise,
            generator=torch.Generator(device=device).manual_seed(seed + 1),
            threads=threads,
            sparsify=check_bool(sparsify, "sparsify"),
            pn_start=pn_start,
        )

    def options(self) -> list[str]:
        """The names of the options of :meth:`calculate_features`."""
        parameters = inspect.signature(self.create_explainer).parameters
        return [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY and n != "device"]

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
            num_iter, c_steps: optimizer steps per round and rounds of the c search; defaults
                per mode (:data:`~foxcem.cem.defaults.MODE_DEFAULTS`); images of more than
                64×64 pixels get fewer steps, l1 and l2 per 28×28 area, and with
                ``gradient="urv"`` ``segments="grid:14"`` and 20 directions, unless given
                (:func:`~foxcem.cem.defaults.size_defaults`; ``meta_data["size_defaults"]``
                says which were used).
            c, K: the first c of the search (float or (N,) tensor) and the confidence κ;
                defaults per mode.
            gamma, AE: autoencoder term weight and autoencoder (default: none).
            pn_target: PN only: the class to move towards.
            lower, upper: bounds on δ replacing the defaults (:mod:`foxcem.cem.bounds`).
            feature_range: (lo, hi) of valid input values, or reference data (M, …) shaped like
                the samples — e.g. the training rows of a table — whose per-feature min and max
                are the range (default: the batch's min and max).
            no_info_value: the value that carries no information (default ``"auto"``: ``"min"``
                for images and sequences; for a table the median for PP and ``None`` for PN;
                ``"min"``: the feature range's lower end; ``"median"`` / ``"mean"``: per feature, over the
                reference data of ``feature_range`` or else the batch — the usual choice for
                tables; a number; a tensor; ``None``: PN may move features either way).
            add_only: PN only: δ ≥ 0.
            segments: explain one value per segment and channel (a label map (N, H, W),
                ``"grid:K"`` or ``"slic:K"``; :mod:`foxcem.cem.segments`): far fewer values to
                estimate for the black box on large images. δ is returned expanded to pixels.
                For a table: feature groups (F,) of labels that change together.
            scores: what the model answers: ``"auto"`` (default: probabilities when each row is
                a probability vector, else logits), ``"logits"`` or ``"probabilities"``;
                probabilities are read as log-probabilities so that ``K`` is a logit margin.
            channels_first: False for (N, H, W, C) inputs; the model is called in that layout.
            smooth: smooth hinge.
            l1, l2, eta: regulariser weights l1·‖δ‖₁ + (l2/2)·‖δ‖²₂ and step scale; defaults
                per mode.
            zero_tol: entries of δ below this fraction of the bounds' magnitude are exactly 0.
            precision: how the model is evaluated: ``"fp32"`` (default), ``"bf16"`` (autocast;
                scores, differences and optimizer state stay float32) or ``"tf32"`` (CUDA).
            compile: ``torch.compile`` the optimizer's proximal step, the loss evaluation and
                the URV direction draw (the first call compiles: tens of seconds).
            num_directions, mu, batch_size, two_sided: URV settings (see
                :class:`~foxcem.cem.URVGradientEstimator`).
            seed: seeds all randomness (default 0; ``None``: fresh randomness on every call).
            start_noise: PN only: std of a Gaussian start (default 0: zeros).
            keep_best: return the best feasible iterate (default True; False: the last one).
            sparsify: drop the smallest entries of each feasible δ for as long as it stays
                feasible, judged by the model, each candidate also tried with the dropped mass
                moved onto the kept entries (‖δ‖₁ never grows; default True; 16 model calls of
                twice the batch at most; :mod:`foxcem.cem.sparsify`): removes the faint entries
                the explanation does not need, also when it holds right at the margin κ.
            pn_start: where a PN's search starts: ``"auto"`` (default: at δ = 0, then once more
                from the box's far corner — every entry at its largest change — for the samples
                the first search leaves without a PN; ``meta_data["restarted"]``), ``"zeros"``
                or ``"full"`` (:mod:`foxcem.cem.restart`).
            progress: a progress bar on stderr: True, False, or ``"auto"`` (default: on for a long
                run when stderr is a terminal).
            threads: CPU threads of the run: ``"auto"`` (default: one thread for small model
                calls, where more threads gain little on an idle machine and lose several times
                on a busy one; the caller's setting for large ones), an int, or ``None`` (the
                caller's setting). Restored afterwards (:mod:`foxcem.core.threads`).
            save_freq, early_stop, history, callback, verbose: see
                :class:`~foxcem.cem.ExplanationGenerator`.

        Returns:
            δ, a detached tensor of the input's shape and dtype.
        """
        return super().calculate_features(model, input_data, pred_label_idx, **kwargs)

    def _attribute(
        self, model: Any, inputs: Inputs, target: torch.Tensor, **kwargs: Any
    ) -> torch.Tensor:
        input_data = inputs.single("cem", "one tensor (N, …)")
        if input_data.dim() < 2:
            raise ValueError(
                f"`input_data` must be a batch (N, ...), got shape {tuple(input_data.shape)}"
            )
        if "device" in kwargs:
            raise TypeError("`device` is taken from `input_data`; do not pass it")
        check_options("cem", kwargs, self.options())
        gradient = check_choice(kwargs.get("gradient", "autograd"), "gradient", list(GRADIENTS))
        sized = size_defaults(
            tuple(input_data.shape[1:]),
            gradient,
            check_mode(kwargs.get("mode", "PN")),
            kwargs.get("gamma", 0.0),
            check_bool(kwargs.get("channels_first", True), "channels_first"),
            given=kwargs,
        )
        generator = self.create_explainer(model, device=input_data.device, **kwargs, **sized)
        savepoints, meta = generator.run(image=input_data, inference_call=model, target=target)
        meta["size_defaults"] = sized
        self.meta_data = meta
        return next(reversed(savepoints.values()))
