"""The surrogate models of KernelSHAP and LIME: Captum's scikit-learn ones when scikit-learn is
installed (so results equal Captum's), else a closed-form weighted least-squares fit in torch."""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from captum._utils.models.linear_model import LinearModel, SkLearnLasso, SkLearnLinearRegression
from torch.utils.data import DataLoader

__all__ = ["default_interpretable_model", "torch_weighted_least_squares"]


def torch_weighted_least_squares(ridge: float) -> Any:
    """A Captum ``LinearModel`` trained by weighted least squares with an intercept and an
    optional ridge penalty, solved exactly in float64 (no scikit-learn needed)."""

    def train(
        model: LinearModel, dataloader: DataLoader, construct_kwargs: dict, **_: Any
    ) -> dict[str, float]:
        xs, ys, ws = [], [], []
        for batch in dataloader:
            x, y = batch[0], batch[1]
            w = batch[2] if len(batch) > 2 else torch.ones(len(x))
            xs.append(x.double()), ys.append(y.double().reshape(len(x))), ws.append(w.double())
        x, y, w = torch.cat(xs), torch.cat(ys), torch.cat(ws)
        design = torch.cat([x, torch.ones(len(x), 1, dtype=x.dtype)], dim=1)
        root = w.clamp(min=0).sqrt().unsqueeze(1)
        penalty = torch.eye(design.shape[1], dtype=x.dtype) * ridge
        penalty[-1, -1] = 0.0  # the intercept is not penalised
        gram = (design * root).T @ (design * root) + penalty
        rhs = (design * root).T @ (y.unsqueeze(1) * root)
        solution = torch.linalg.lstsq(gram, rhs).solution[:, 0]
        model._construct_model_params(
            norm_type=None,
            weight_values=solution[:-1].float().view(1, -1),
            bias_value=solution[-1:].float(),
        )
        return {}

    return LinearModel(train_fn=train)


def default_interpretable_model(method: str) -> Any:
    """KernelSHAP's linear regression or LIME's Lasso (α = 0.01), as Captum's defaults when
    scikit-learn is installed; without it, torch least squares (LIME: a ridge penalty of 0.01 in
    place of the Lasso's)."""
    if importlib.util.find_spec("sklearn") is not None:
        return SkLearnLinearRegression() if method == "kernel_shap" else SkLearnLasso(alpha=0.01)
    return torch_weighted_least_squares(0.0 if method == "kernel_shap" else 0.01)
