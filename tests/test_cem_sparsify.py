"""The final sparsification pass: it finds the largest feasible drop (brute force over every k
where the grid covers them all, with and without moving the dropped mass onto the kept entries),
never breaks an explanation (checked on the model), never adds an entry, never flips a sign and
never grows ‖δ‖₁."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from foxcem import CEMExplainer
from foxcem.cem import CEMLoss
from foxcem.cem.sparsify import sparsify
from foxcem.demo.digits import DigitsSplit

pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")


def drop_smallest(delta: torch.Tensor, k: int) -> torch.Tensor:
    """δ (d,) with its k smallest nonzero magnitudes set to 0, the brute-force way."""
    out = delta.clone()
    nonzero = [i for i in range(len(delta)) if delta[i] != 0]
    for i in sorted(nonzero, key=lambda i: float(delta[i].abs()))[:k]:
        out[i] = 0
    return out


def rescaled(dropped: torch.Tensor, delta: torch.Tensor, lower: torch.Tensor,
             upper: torch.Tensor) -> torch.Tensor:  # fmt: skip
    """The brute-force rescale: the kept entries times ‖δ‖₁ / ‖kept‖₁, clipped to the box."""
    kept = float(dropped.abs().sum())
    scale = float(delta.abs().sum()) / kept if kept > 0 else 1.0
    return torch.minimum(torch.maximum(dropped * scale, lower), upper)


@pytest.mark.parametrize("rescale", [False, True])
def test_the_pass_finds_the_largest_feasible_drop_as_brute_force(rescale: bool) -> None:
    torch.manual_seed(0)
    model = nn.Linear(10, 3).eval()
    x = torch.randn(12, 10)
    loss = CEMLoss(model, x, mode="PN", K=0.5, no_info_value=None, feature_range=(-10.0, 10.0))
    delta = torch.randn(12, 10) * 3
    delta[:, :2] = 0  # some entries already zero
    with torch.no_grad():
        holds = loss.feasible(loss.evaluate(delta))
    assert 3 <= int(holds.sum()) < 12
    lower, upper = torch.full_like(x, -20.0), torch.full_like(x, 20.0)
    out = sparsify(
        loss.evaluate, loss.feasible, delta, lower, upper, holds, candidates=16, rescale=rescale
    )

    def holds_at(row: torch.Tensor, i: int) -> bool:
        return bool(loss.feasible(loss.evaluate(row[None], torch.tensor([i]))))

    rescaled_rows = 0
    for i in range(12):
        if not holds[i]:
            assert torch.equal(out[i], delta[i])  # infeasible rows are left alone
            continue
        tried = {k: [drop_smallest(delta[i], k)] for k in range(9)}
        if rescale:
            for rows in tried.values():
                rows.append(rescaled(rows[0], delta[i], lower[i], upper[i]))
        best = max(k for k, rows in tried.items() if any(holds_at(r, i) for r in rows))
        plain = tried[best][0]
        expected = plain if holds_at(plain, i) else tried[best][1]
        rescaled_rows += int(not torch.equal(expected, plain))
        assert torch.allclose(out[i], expected, rtol=1e-6, atol=1e-7), i
        assert holds_at(out[i], i)
    assert rescale == (rescaled_rows > 0)  # the case is exercised


def test_entries_whose_box_excludes_zero_are_kept() -> None:
    torch.manual_seed(1)
    model = nn.Linear(4, 2).eval()
    x = torch.randn(3, 4)
    loss = CEMLoss(model, x, mode="PN", K=0.0, no_info_value=None, feature_range=(-10.0, 10.0))
    delta = torch.full((3, 4), 0.5)
    lower = torch.zeros_like(x)
    lower[:, 0] = 0.25  # entry 0 must stay at least 0.25
    everything = torch.ones(3, dtype=torch.bool)

    def always(evaluation) -> torch.Tensor:
        return torch.ones_like(evaluation.success)

    out = sparsify(loss.evaluate, always, delta, lower, torch.ones_like(x), everything)
    assert torch.equal(out[:, 0], delta[:, 0]) and (out[:, 1:] == 0).all()


@pytest.mark.parametrize("mode", ["PN", "PP"])
def test_sparsified_explanations_still_hold_on_the_model(
    mode: str, digits_model: nn.Module, digits_split: DigitsSplit
) -> None:
    x = digits_split.x_test[:8]
    options = dict(mode=mode, gradient="urv", num_directions=20, num_iter=60, c_steps=3)
    explainer = CEMExplainer()
    plain = explainer.calculate_features(digits_model, x, sparsify=False, **options)
    plain_found = explainer.meta_data["found"]
    sparse = explainer.calculate_features(digits_model, x, **options)  # the default: on
    found, base = explainer.meta_data["found"], explainer.meta_data["base"]
    assert torch.equal(found, plain_found) and found.any()
    # No entry added, no sign flipped, ‖δ‖₁ never larger (the kept entries may be rescaled).
    assert ((sparse == 0) | (torch.sign(sparse) == torch.sign(plain))).all()
    l1 = lambda d: d.abs().flatten(1).sum(1)  # noqa: E731
    assert (l1(sparse) <= l1(plain) * (1 + 1e-5) + 1e-6).all()
    nonzero = lambda d: (d != 0).flatten(1).sum(1)  # noqa: E731
    assert (nonzero(sparse) <= nonzero(plain)).all() and nonzero(sparse).sum() < nonzero(
        plain
    ).sum()
    with torch.no_grad():
        scores = digits_model(x + sparse if mode == "PN" else base + sparse)
        target = digits_model(x).argmax(1)
    own = scores.gather(1, target[:, None])[:, 0]
    other = scores.scatter(1, target[:, None], float("-inf")).amax(1)
    margin = own - other if mode == "PP" else other - own
    kappa = 2.0 if mode == "PP" else 5.0
    assert (margin[found] >= kappa - 1e-4).all()


def test_l1_default_grows_with_the_autoencoder_weight() -> None:
    from foxcem.cem.defaults import MODE_DEFAULTS, mode_defaults

    assert mode_defaults("PP", 0.0) == MODE_DEFAULTS["PP"]
    assert mode_defaults("PP", 100.0)["l1"] == MODE_DEFAULTS["PP"]["l1"] + 25.0
    assert mode_defaults("PN", 100.0)["l1"] == MODE_DEFAULTS["PN"]["l1"] + 50.0
    assert mode_defaults("PN", 0.0) == MODE_DEFAULTS["PN"]
    generator = CEMExplainer().create_explainer(None, mode="PP", gamma=40.0, AE=nn.Identity())
    assert generator.optimizer_kwargs["l1"] == MODE_DEFAULTS["PP"]["l1"] + 10.0
    explicit = CEMExplainer().create_explainer(None, mode="PP", gamma=40.0, l1=2.0)
    assert explicit.optimizer_kwargs["l1"] == 2.0
