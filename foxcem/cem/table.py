"""Contrastive explanations of table rows as readable tables.

``contrast_tables(model, x, pn=δ_PN, pp=δ_PP, pp_base=v)`` gives one :class:`ContrastTable` per
row: for each feature its value, the change the pertinent negative makes and the value after it,
and the value the pertinent positive keeps; and the class of the row, after the PN, and of the PP
alone. ``print(table)`` shows it as text; ``table.to_frame()`` as a pandas DataFrame (when pandas
is installed)::

    explainer = CEMExplainer()
    pn = explainer.calculate_features(model, x, mode="PN", feature_range=x_train)
    pp = explainer.calculate_features(model, x, mode="PP", feature_range=x_train)
    base = explainer.meta_data["base"]          # what the PP is kept from (the medians)
    for table in contrast_tables(model, x, pn=pn, pp=pp, pp_base=base, feature_names=names):
        print(table)
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch

from foxcem.core.checks import check_scores, check_tensor
from foxcem.core.model_state import preserve_model_state

__all__ = ["ContrastTable", "FeatureRow", "contrast_tables"]


@dataclass
class FeatureRow:
    """One feature of one explained row (``None``: that explanation was not given, or leaves the
    feature alone)."""

    feature: str
    value: float
    pn_change: Optional[float] = None
    pn_value: Optional[float] = None
    pp_kept: Optional[float] = None


@dataclass
class ContrastTable:
    """The contrastive explanation of one row: its features and the classes.

    ``predicted`` is the model's class for the row, ``after_pn`` for the row plus the PN,
    ``pp_alone`` for the PP alone (the base plus what the PP keeps); ``None`` where that
    explanation was not given.
    """

    sample: int
    predicted: str
    after_pn: Optional[str] = None
    pp_alone: Optional[str] = None
    rows: list[FeatureRow] = field(default_factory=list)

    def to_frame(self) -> Any:
        """The rows as a ``pandas.DataFrame`` indexed by feature (needs pandas)."""
        try:
            import pandas as pd
        except ImportError as error:  # an optional extra
            raise ImportError("`to_frame` needs pandas: pip install pandas") from error
        frame = pd.DataFrame([vars(row) for row in self.rows]).set_index("feature")
        frame.attrs.update(predicted=self.predicted, after_pn=self.after_pn, pp_alone=self.pp_alone)
        return frame

    def __str__(self) -> str:
        classes = [f"row {self.sample}: class {self.predicted}"]
        if self.after_pn is not None:
            classes.append(f"after the PN: {self.after_pn}")
        if self.pp_alone is not None:
            classes.append(f"PP alone: {self.pp_alone}")
        header = ("feature", "value", "PN change", "after PN", "PP keeps")
        cells = [
            (r.feature, _number(r.value), _number(r.pn_change, signed=True),
             _number(r.pn_value), _number(r.pp_kept))
            for r in self.rows
        ]  # fmt: skip
        widths = [max(len(str(c)) for c in column) for column in zip(header, *cells)]
        lines = ["; ".join(classes)]
        for line in (header, *cells):
            lines.append("  ".join(str(c).rjust(w) if i else str(c).ljust(w)
                                   for i, (c, w) in enumerate(zip(line, widths))))  # fmt: skip
        return "\n".join(lines)

    def _repr_html_(self) -> str:  # a notebook shows the DataFrame when pandas is there
        try:
            return str(self.to_frame()._repr_html_())
        except ImportError:
            return f"<pre>{self}</pre>"


def _number(value: Optional[float], signed: bool = False) -> str:
    if value is None:
        return ""
    return f"{value:+.4g}" if signed else f"{value:.4g}"


def _classes(
    model: Callable[[torch.Tensor], Any], x: torch.Tensor, names: Optional[Sequence[str]]
) -> list[str]:
    with torch.no_grad():
        labels = check_scores(model(x), x.shape[0], device=x.device).argmax(dim=1).tolist()
    return [str(names[i]) if names is not None and i < len(names) else str(i) for i in labels]


def _delta(value: Optional[torch.Tensor], x: torch.Tensor, name: str) -> Optional[torch.Tensor]:
    if value is None:
        return None
    check_tensor(value, name)
    if value.shape != x.shape:
        raise ValueError(f"`{name}` must have the shape of `x` {tuple(x.shape)}, got "
                         f"{tuple(value.shape)}")  # fmt: skip
    return value.detach().to(x.device, x.dtype)


def contrast_tables(
    model: Callable[[torch.Tensor], Any],
    x: torch.Tensor,
    pn: Optional[torch.Tensor] = None,
    pp: Optional[torch.Tensor] = None,
    pp_base: Optional[torch.Tensor] = None,
    feature_names: Optional[Sequence[str]] = None,
    class_names: Optional[Sequence[str]] = None,
    only_changed: bool = True,
    zero_tol: float = 0.0,
) -> list[ContrastTable]:
    """One :class:`ContrastTable` per row of ``x``.

    Args:
        model: the explained model (a module, a callable or an ``InferenceWrapper``), called on
            (N, F) rows; a module is run in eval mode and left as it was.
        x: the explained rows, (N, F).
        pn, pp: the pertinent negative and positive δ of ``CEMExplainer`` (N, F); either may be
            ``None``.
        pp_base: what the PP is kept from (``explainer.meta_data["base"]`` of the PP call: the
            per-feature medians by default); required with ``pp``.
        feature_names, class_names: names for the F features and for the classes.
        only_changed: list only features a PN changes or a PP keeps (all when neither is given).
        zero_tol: |δ| at or below this counts as "not changed".

    Raises:
        ValueError: a shape that is not (N, F), names of the wrong length, ``pp`` without
            ``pp_base``.
    """
    check_tensor(x, "x")
    if x.dim() != 2:
        raise ValueError(f"`x` must be table rows (N, F), got shape {tuple(x.shape)}")
    n, f = x.shape
    names = [f"x{i}" for i in range(f)] if feature_names is None else list(feature_names)
    if len(names) != f:
        raise ValueError(f"`feature_names` must name the {f} features, got {len(names)}")
    pn, pp = _delta(pn, x, "pn"), _delta(pp, x, "pp")
    if pp is not None and pp_base is None:
        raise ValueError("`pp_base` is required with `pp`: pass explainer.meta_data['base']")
    base = None if pp is None else _delta(pp_base, x, "pp_base")
    module = isinstance(model, torch.nn.Module)
    with preserve_model_state(model, x) if module else contextlib.nullcontext():
        predicted = _classes(model, x, class_names)
        after_pn = None if pn is None else _classes(model, x + pn, class_names)
        pp_alone = None if pp is None or base is None else _classes(model, base + pp, class_names)
    tables = []
    for i in range(n):
        table = ContrastTable(
            sample=i,
            predicted=predicted[i],
            after_pn=None if after_pn is None else after_pn[i],
            pp_alone=None if pp_alone is None else pp_alone[i],
        )
        for j in range(f):
            pn_j = None if pn is None else float(pn[i, j])
            pp_j = None if pp is None else float(pp[i, j])
            changed = pn_j is not None and abs(pn_j) > zero_tol
            kept = pp_j is not None and abs(pp_j) > zero_tol
            if only_changed and (pn is not None or pp is not None) and not (changed or kept):
                continue
            value = float(x[i, j])
            table.rows.append(FeatureRow(
                feature=names[j],
                value=value,
                pn_change=pn_j if changed else None,
                pn_value=value + pn_j if changed and pn_j is not None else None,
                pp_kept=float(base[i, j]) + pp_j if kept and base is not None and pp_j is not None
                else None,
            ))  # fmt: skip
        tables.append(table)
    return tables
