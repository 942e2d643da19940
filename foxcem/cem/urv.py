"""The uniform-random-vector (URV) gradient estimate, batched over samples and directions.

For each sample, q directions u_j are drawn Gaussian and normalised to the unit sphere, and ::

    one-sided:  ĝ = d/(μ·q) · Σ_j (F(δ + μ·u_j) − F(δ)) · u_j
    two-sided:  ĝ = d/(μ·q) · Σ_j (F(δ + μ·u_j) − F(δ − μ·u_j))/2 · u_j    (same u_j twice)

All N·q perturbed points (and the N points F(δ) of the one-sided estimate) form one stream of
rows, sample by sample, sent through the loss (the model) in passes of at most ``batch_size``
rows. Each direction is a pure function of (seed, call, sample, direction index), drawn on δ's
device per pass (:func:`~foxcem.core.seeding.counter_normal`), and the sum over directions is
accumulated in stream order, so

* peak memory is O(batch_size · d), whatever N and q;
* the estimate does not depend on ``batch_size`` (bitwise on the CPU; on CUDA the float64
  accumulation makes the order's effect vanish below float32 resolution);
* sample n's directions do not depend on which other samples are in the batch.

Numerics: F(δ + μu) − F(δ) shrinks with μ, so μ is kept above a floor tied to the precision the
model computes in and to the input scale (:meth:`URVGradientEstimator.current_mu`); loss values
and differences are accumulated in float32 or wider whatever the model's dtype.

When two-sided pays: its difference cancels the curvature term μ/2·uᵀHu that biases the one-sided
one, which matters when μ is large — at the floor of a half-precision model, or with a large
constant ``mu``. It costs 2q rows per sample instead of q + 1 and gives no free evaluation of
F(δ). ``two_sided="auto"`` (the default) uses it when the model computes in half precision.
"""

from __future__ import annotations

import math
from typing import Any, Optional, Union

import torch

from foxcem.cem.directions import CallDirections, Sampler
from foxcem.cem.evaluation import CEMEvaluation
from foxcem.cem.gradient_source import Evaluation, GradientSource, PerSampleLoss, loss_values
from foxcem.core.batching import (
    MAX_IMAGE_ROWS,
    MAX_TABLE_ROWS,
    auto_batch_size,
    check_batch_size,
    is_out_of_memory,
)
from foxcem.core.checks import check_finite_float, check_positive_int
from foxcem.core.seeding import check_seed, counter_normal, fresh_seed

__all__ = ["URVGradientEstimator", "Sampler", "check_urv_options"]

_HALF = (torch.float16, torch.bfloat16)


def check_urv_options(
    num_directions: object, mu: object, batch_size: object, two_sided: object
) -> None:
    """Check the estimator's options (``ValueError``/``TypeError`` naming the option)."""
    check_positive_int(num_directions, "num_directions")
    if mu is not None and not (
        isinstance(mu, (int, float)) and not isinstance(mu, bool) and mu > 0 and math.isfinite(mu)
    ):
        raise ValueError(f"`mu` must be a finite float > 0 or None, got {mu!r}")
    check_batch_size(batch_size, "batch_size")
    if not isinstance(two_sided, bool) and not (isinstance(two_sided, str) and two_sided == "auto"):
        raise ValueError(f"`two_sided` must be True, False or 'auto', got {two_sided!r}")


class URVGradientEstimator(GradientSource):
    """Batched black-box gradient estimate of a per-sample loss (see the module docstring).

    Args:
        loss: a :class:`~foxcem.cem.CEMLoss`, any callable ``loss(rows, samples=index)`` mapping
            M perturbed points (M, …) of the samples ``index`` (M,) to their values (M,), or a
            plain ``loss(delta) -> values`` on (N, …) batches (then called once per direction
            with one candidate per sample).
        num_directions: q, the number of random directions per sample and call.
        mu: constant smoothing radius; ``None``: μ_t = 1/(√t·√d), never below the floor.
        batch_size: the most rows per model call: an int, ``None`` (no limit: one pass) or
            ``"auto"`` (:func:`~foxcem.core.batching.auto_batch_size`). The result does not depend on it.
        two_sided: the symmetric difference (``True``), the one-sided one (``False``), or
            ``"auto"``: two-sided when the model computes in float16/bfloat16.
        generator: a ``torch.Generator`` to draw the seed from (kept for compatibility; the
            directions themselves are counter-based).
        seed: seed of the directions; ``None``: fresh randomness on every construction.
        sampler: replaces the counter-based draw: ``sampler(shape, generator=, device=,
            dtype=)`` must return raw noise of shape (n, q, …) for a whole call (it is
            materialised: memory O(n·q·d)). Lets a test feed chosen directions.
        mu_floor: scale of the floor on μ, ``mu_floor · √eps · scale · √d`` with eps the
            evaluation precision's machine epsilon and scale the input's magnitude (0: none).
        precision: ``"fp32"`` (default), ``"bf16"`` (the model under bfloat16 autocast; μ's
            floor and two-sided differences follow) or ``"tf32"``.
        compile: ``torch.compile`` the loss evaluation and the direction draw.

    ``estimator(delta)`` takes δ (n, …) and returns ĝ (n, …) in δ's dtype.
    """

    def __init__(
        self,
        loss: PerSampleLoss,
        num_directions: int = 100,
        mu: Optional[float] = None,
        batch_size: Union[int, str, None] = "auto",
        two_sided: Union[bool, str] = "auto",
        generator: Optional[torch.Generator] = None,
        *,
        seed: Optional[int] = None,
        sampler: Optional[Sampler] = None,
        mu_floor: float = 1.0,
        precision: Optional[str] = None,
        compile: bool = False,
    ) -> None:
        super().__init__(loss, precision=precision, compile=compile)
        self._normal = torch.compile(counter_normal, dynamic=True) if compile else counter_normal
        check_urv_options(num_directions, mu, batch_size, two_sided)
        self.num_directions = int(num_directions)
        self.mu = None if mu is None else float(mu)
        self.batch_size = batch_size
        self.two_sided = two_sided
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(
                f"`generator` must be a torch.Generator, got {type(generator).__name__}"
            )
        if seed is None and generator is not None:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
        self.seed = fresh_seed() if check_seed(seed) is None else int(seed)  # type: ignore[arg-type]
        self.sampler = sampler
        self.mu_floor = check_finite_float(mu_floor, "mu_floor", minimum=0.0)
        #: number of calls so far (the t of the μ schedule).
        self.t = 0
        #: μ and rows per pass used by the last call.
        self.last_mu = float("nan")
        self.last_batch_size = 0

    def reset(self) -> None:
        """Restart the μ schedule (t = 0); the directions of later calls change too."""
        self.t = 0

    # ------------------------------------------------------------------------------ μ
    def evaluation_eps(self, dtype: torch.dtype, device: torch.device) -> float:
        """Machine epsilon of the coarsest precision the loss is computed in: δ's dtype, the
        model's scores (``loss.score_dtype``) and an active autocast."""
        dtypes = [dtype]
        score_dtype = getattr(self.loss, "score_dtype", None)
        if isinstance(score_dtype, torch.dtype) and score_dtype.is_floating_point:
            dtypes.append(score_dtype)
        if torch.is_autocast_enabled(device.type):
            dtypes.append(torch.get_autocast_dtype(device.type))
        return max(torch.finfo(d).eps for d in dtypes)

    def current_mu(
        self, d: int, dtype: torch.dtype = torch.float64, device: Union[str, torch.device] = "cpu"
    ) -> float:
        """μ for the current call count t: ``mu``, or max(1/(√t·√d), floor)."""
        if self.mu is not None:
            return self.mu
        schedule = 1.0 / (math.sqrt(max(self.t, 1)) * math.sqrt(d))
        scale = float(getattr(self.loss, "input_scale", 1.0))
        eps = self.evaluation_eps(dtype, torch.device(device))
        return max(schedule, self.mu_floor * math.sqrt(eps) * scale * math.sqrt(d))

    def _two_sided(self, delta: torch.Tensor) -> bool:
        if self.two_sided == "auto":
            return self.evaluation_eps(delta.dtype, delta.device) >= torch.finfo(torch.float16).eps
        return bool(self.two_sided)

    # ------------------------------------------------------------------------------ estimate
    def __call__(self, delta: torch.Tensor, samples: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not isinstance(delta, torch.Tensor) or delta.dim() < 1:
            raise ValueError("`delta` must be a tensor with a sample dimension: (N, ...)")
        delta = delta.detach()
        n = delta.shape[0]
        if samples is None:
            samples = torch.arange(n, device=delta.device)
        elif not self.takes_samples:
            raise ValueError("this loss does not accept `samples=`; pass all N samples")
        self.t += 1
        d = delta[0].numel()
        q = self.num_directions
        two_sided = self._two_sided(delta)
        mu = self.current_mu(d, delta.dtype, delta.device)
        self.last_mu = mu
        with torch.no_grad():
            if not self.takes_samples:
                grad = self._estimate_plain(delta, mu, two_sided)
            else:
                grad = self._estimate_stream(delta, samples, mu, two_sided)
        return grad.mul_(d / (mu * q)).to(delta.dtype).reshape(delta.shape)

    def _accumulator(self, delta: torch.Tensor) -> torch.Tensor:
        # Stream order makes CPU sums independent of the pass size; CUDA adds atomically, where
        # float64 makes the order's effect vanish below float32 resolution.
        wide = delta.dtype == torch.float64 or delta.device.type == "cuda"
        dtype = torch.float64 if wide and delta.device.type != "mps" else torch.float32
        return torch.zeros((delta.shape[0], delta[0].numel()), dtype=dtype, device=delta.device)

    def _estimate_stream(
        self, delta: torch.Tensor, samples: torch.Tensor, mu: float, two_sided: bool
    ) -> torch.Tensor:
        """Σ_j diff_nj·u_nj per sample (n, d), evaluating the stream of rows in passes."""
        n, d, q = delta.shape[0], delta[0].numel(), self.num_directions
        per_sample = 2 * q if two_sided else q + 1
        total = n * per_sample
        work = torch.float64 if delta.dtype == torch.float64 else torch.float32
        flat = delta.reshape(n, d)
        directions = CallDirections(delta, q, self.seed, self.t, self.sampler, self._normal)
        acc = self._accumulator(delta)
        values: Optional[torch.Tensor] = None  # (n, per_sample)
        base_parts: list[Evaluation] = []
        size = self._resolve_batch_size(d, delta.device, total)
        start, calls = 0, 0
        while start < total:
            rows = torch.arange(start, min(start + size, total), device=delta.device)
            local = torch.div(rows, per_sample, rounding_mode="floor")
            pos = rows - local * per_sample
            if two_sided:  # interleaved pairs: +u_j, −u_j
                j, coef = torch.div(pos, 2, rounding_mode="floor"), 1.0 - 2.0 * (pos % 2)
            else:  # the base row, then +u_j
                j, coef = (pos - 1).clamp_(min=0), (pos > 0).to(work)
            u = directions.unit(local, samples[local], j, d, work)
            points = torch.addcmul(
                flat.index_select(0, local).to(work), (mu * coef).to(work).unsqueeze(1), u
            )
            try:
                evaluation = self.evaluate(
                    points.to(delta.dtype).reshape((len(rows),) + tuple(delta.shape[1:])),
                    samples[local],
                )
            except RuntimeError as exc:  # a pass too large for the GPU: halve it and retry
                if not is_out_of_memory(exc) or size == 1:
                    raise
                size = max(1, size // 2)
                torch.cuda.empty_cache()
                continue
            calls += 1
            value = loss_values(evaluation).detach().to(acc.dtype).reshape(-1)
            if values is None:
                values = torch.empty((n, per_sample), dtype=acc.dtype, device=delta.device)
            values[local, pos] = value
            if two_sided:  # a pair's − row adds (F₊ − F₋)/2·u; a + row adds nothing
                minus = pos % 2 == 1
                partner = values[local, (pos - 1).clamp_(min=0)]
                diff = torch.where(minus, 0.5 * (partner - value), torch.zeros_like(value))
            else:  # a base row adds (F(δ) − F(δ))·u = 0
                is_base = pos == 0
                if bool(is_base.any()):
                    base_parts.append(_select_rows(evaluation, is_base))
                diff = value - values[local, 0]
            acc.index_add_(0, local, u.mul_(diff.to(u.dtype).unsqueeze(1)).to(acc.dtype))
            start += len(rows)
        self.last_num_calls = calls
        self.last_batch_size = size
        self.last_evaluation = _concat(base_parts) if base_parts else None
        return acc

    def _estimate_plain(self, delta: torch.Tensor, mu: float, two_sided: bool) -> torch.Tensor:
        """The same sum for a loss without ``samples=``: one call per direction (and side), each
        with one candidate per sample."""
        n, d, q = delta.shape[0], delta[0].numel(), self.num_directions
        work = torch.float64 if delta.dtype == torch.float64 else torch.float32
        flat = delta.reshape(n, d).to(work)
        directions = CallDirections(delta, q, self.seed, self.t, self.sampler, self._normal)
        acc = self._accumulator(delta)
        local = torch.arange(n, device=delta.device)
        calls = 1
        base = None
        if not two_sided:
            evaluation = self.evaluate(delta)
            base = loss_values(evaluation).detach().to(acc.dtype).reshape(n)
            self.last_evaluation = evaluation
        else:
            self.last_evaluation = None
        for j in range(q):
            index = torch.full((n,), j, device=delta.device)
            u = directions.unit(local, local, index, d, work)
            plus = self._plain_values(flat + mu * u, delta, acc.dtype)
            if two_sided:
                diff = 0.5 * (plus - self._plain_values(flat - mu * u, delta, acc.dtype))
                calls += 2
            else:
                assert base is not None
                diff = plus - base
                calls += 1
            acc.add_(u.to(acc.dtype) * diff.unsqueeze(1))
        self.last_num_calls = calls - (1 if two_sided else 0)
        self.last_batch_size = n
        return acc

    def _plain_values(
        self, points: torch.Tensor, delta: torch.Tensor, dtype: torch.dtype
    ) -> torch.Tensor:
        value = loss_values(self.evaluate(points.to(delta.dtype).reshape(delta.shape)))
        return value.detach().to(dtype).reshape(delta.shape[0])

    def rows_per_call(self, num_samples: int, sample_shape: torch.Size) -> int:
        """Rows per pass: the N·(q + 1) (two-sided: N·2q) points of a call, in passes of at most
        ``batch_size`` (for a loss without ``samples=``: one candidate per sample and call)."""
        if not self.takes_samples:
            return num_samples
        q = self.num_directions
        total = num_samples * (2 * q if self.two_sided is True else q + 1)
        x = getattr(self.loss, "x", None)
        device = x.device if isinstance(x, torch.Tensor) else torch.device("cpu")
        return self._resolve_batch_size(math.prod(sample_shape), device, total)

    def _resolve_batch_size(self, d: int, device: torch.device, total: int) -> int:
        if self.batch_size is None:
            return total
        if self.batch_size == "auto":
            x = getattr(self.loss, "x", None)  # in segment space the model sees pixel images
            numel = max(d, x[0].numel()) if isinstance(x, torch.Tensor) and x.dim() > 1 else d
            table = isinstance(x, torch.Tensor) and x.dim() == 2
            return auto_batch_size(
                numel, device, total, maximum=MAX_TABLE_ROWS if table else MAX_IMAGE_ROWS
            )
        return int(self.batch_size)

    def __repr__(self) -> str:
        return (
            f"URVGradientEstimator(num_directions={self.num_directions}, mu={self.mu}, "
            f"batch_size={self.batch_size!r}, two_sided={self.two_sided!r})"
        )


def _select_rows(evaluation: Evaluation, mask: torch.Tensor) -> Evaluation:
    if isinstance(evaluation, CEMEvaluation):
        return CEMEvaluation(*(t.detach().reshape(-1)[mask] for t in evaluation))
    return evaluation.detach().reshape(-1)[mask]


def _concat(parts: list[Any]) -> Evaluation:
    if isinstance(parts[0], CEMEvaluation):
        return CEMEvaluation(*(torch.cat(fields) for fields in zip(*parts)))
    return torch.cat(parts)
