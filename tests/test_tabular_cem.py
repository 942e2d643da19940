"""CEM on real table rows (scikit-learn's breast-cancer data): a torch MLP with the exact gradient
and a scikit-learn pipeline behind InferenceWrapper with the black-box estimate, with defaults;
the range taken from the training rows, feature groups, probabilities read as log-probabilities,
readable per-row tables, and one clear error for each bad table option."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from foxcem import CEMExplainer, InferenceWrapper
from foxcem.cem import CEMLoss, contrast_tables
from foxcem.demo.tables import TableSplit, load_breast_cancer_split, train_table_mlp

pytest.importorskip("sklearn")
pytestmark = pytest.mark.filterwarnings("ignore:CEM found no feasible")


@pytest.fixture(scope="module")
def split() -> TableSplit:
    return load_breast_cancer_split(seed=0)


@pytest.fixture(scope="module")
def mlp(split: TableSplit) -> nn.Module:
    model = train_table_mlp(split, seed=0)
    accuracy = (model(split.x_test).argmax(1) == split.y_test).float().mean()
    assert accuracy > 0.9
    return model


def margins(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """f_t − max_{i≠t} f_i per row (an independent reading of the model's answer)."""
    own = logits.gather(1, target[:, None])[:, 0]
    other = logits.scatter(1, target[:, None], float("-inf")).amax(dim=1)
    return own - other


def test_tabular_cem_on_a_torch_mlp_with_defaults(split: TableSplit, mlp: nn.Module) -> None:
    x = split.x_test[:100]
    explainer = CEMExplainer()
    with torch.no_grad():
        predicted = mlp(x).argmax(1)
    pn = explainer.calculate_features(mlp, x, mode="PN", feature_range=split.x_train)
    found_pn = explainer.meta_data["found"]
    pp = explainer.calculate_features(mlp, x, mode="PP", feature_range=split.x_train)
    found_pp, base = explainer.meta_data["found"], explainer.meta_data["base"]
    with torch.no_grad():
        after_pn, pp_alone = mlp(x + pn), mlp(base + pp)
    changed = after_pn.argmax(1) != predicted
    kept = pp_alone.argmax(1) == predicted
    assert changed.float().mean() >= 0.95 and kept.float().mean() >= 0.95
    # found is true to the model: the class changed (kept) with the margin κ asked for.
    assert torch.equal(found_pn, changed & (margins(after_pn, predicted) <= -5.0 + 1e-4))
    assert torch.equal(found_pp, kept & (margins(pp_alone, predicted) >= 2.0 - 1e-4))
    lo, hi = split.x_train.amin(0), split.x_train.amax(0)
    inside = ((x + pn) >= lo - 1e-5) & ((x + pn) <= hi + 1e-5)
    assert inside[(x >= lo) & (x <= hi)].all()  # every feature stays in the training range
    # PP keeps part of each row's distance from the training medians.
    median = split.x_train.median(dim=0).values
    torch.testing.assert_close(base, median.expand_as(x))
    assert ((pp * (x - median)) >= -1e-6).all() and (pp.abs() <= (x - median).abs() + 1e-5).all()


def test_tabular_cem_on_a_scikit_learn_model_through_the_black_box(split: TableSplit) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    raw_train, raw_test = split.raw_train.numpy(), split.raw_test.numpy()
    pipeline = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    pipeline.fit(raw_train, split.y_train.numpy())
    model = InferenceWrapper(pipeline.predict_proba, numpy=True)
    x = split.raw_test[:100]  # raw units: areas in the thousands beside ratios below one
    explainer = CEMExplainer()
    options = dict(gradient="urv", num_directions=20, feature_range=split.raw_train)
    pn = explainer.calculate_features(model, x, mode="PN", **options)
    found_pn = explainer.meta_data["found"]
    pp = explainer.calculate_features(model, x, mode="PP", **options)
    found_pp, base = explainer.meta_data["found"], explainer.meta_data["base"]
    predicted = pipeline.predict(raw_test[:100])
    changed = pipeline.predict((x + pn).numpy()) != predicted
    kept = pipeline.predict((base + pp).numpy()) == predicted
    assert changed.mean() >= 0.95 and kept.mean() >= 0.95
    # found, read independently: log-probability margins of scikit-learn's own answer.
    target = torch.as_tensor(predicted)
    log_pn = torch.as_tensor(np.log(pipeline.predict_proba((x + pn).numpy())))
    log_pp = torch.as_tensor(np.log(pipeline.predict_proba((base + pp).numpy())))
    pn_margin_held = margins(log_pn, target) <= -5 + 1e-3
    pp_margin_held = margins(log_pp, target) >= 2 - 1e-3
    assert torch.equal(found_pn, torch.as_tensor(changed) & pn_margin_held)
    assert torch.equal(found_pp, torch.as_tensor(kept) & pp_margin_held)
    assert found_pn.float().mean() >= 0.9 and found_pp.float().mean() >= 0.9
    lo, hi = split.raw_train.amin(0), split.raw_train.amax(0)
    slack = 1e-5 * torch.maximum(lo.abs(), hi.abs()) + 1e-6  # float32 rounding of x + δ
    assert (((x + pn) >= lo - slack) | (x < lo)).all()
    assert (((x + pn) <= hi + slack) | (x > hi)).all()


def test_feature_groups_change_together(split: TableSplit, mlp: nn.Module) -> None:
    # breast cancer: ten measurements, each as mean, standard error and worst value.
    groups = torch.arange(30) % 10
    x = split.x_test[:16]
    explainer = CEMExplainer()
    pn = explainer.calculate_features(
        mlp, x, mode="PN", feature_range=split.x_train, segments=groups
    )
    theta = explainer.meta_data["segment_values"]  # (N, 1, 10), in units of each range
    assert theta.shape == (16, 1, 10)
    lo, hi = split.x_train.amin(0), split.x_train.amax(0)
    unit = hi - lo
    expected = torch.clamp(theta[:, 0, groups] * unit, lo - x, hi - x)
    torch.testing.assert_close(pn, expected, rtol=1e-5, atol=1e-6)
    assert explainer.meta_data["found"].float().mean() >= 0.9


def test_probabilities_are_read_as_log_probabilities(split: TableSplit, mlp: nn.Module) -> None:
    x = split.x_test[:20]
    softmax = nn.Sequential(mlp, nn.Softmax(dim=1))
    from_logits = CEMLoss(mlp, x, feature_range=split.x_train)
    from_probabilities = CEMLoss(softmax, x, feature_range=split.x_train)
    assert from_probabilities.reading.probabilities and not from_logits.reading.probabilities
    delta = 0.2 * torch.randn((8,) + tuple(x.shape), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = from_logits.attack(delta)
        attack = from_probabilities.attack(delta)
    # log softmax = logits − logsumexp: the same margins wherever float32 resolves them.
    resolved = expected.abs() < 15
    assert resolved.float().mean() > 0.2
    torch.testing.assert_close(attack[resolved], expected[resolved], rtol=1e-4, atol=1e-4)
    as_logits = CEMLoss(softmax, x, feature_range=split.x_train, scores="logits")
    assert not as_logits.reading.probabilities
    with torch.no_grad():
        assert (as_logits.attack(delta).abs() <= 1).all()  # differences of probabilities
    explainer = CEMExplainer()
    explainer.calculate_features(softmax, x, mode="PN", feature_range=split.x_train)
    assert explainer.meta_data["found"].float().mean() >= 0.9  # κ = 5 reachable in log space


def test_contrast_tables_read_the_model(split: TableSplit, mlp: nn.Module) -> None:
    x = split.x_test[:3]
    explainer = CEMExplainer()
    pn = explainer.calculate_features(mlp, x, mode="PN", feature_range=split.x_train)
    pp = explainer.calculate_features(mlp, x, mode="PP", feature_range=split.x_train)
    base = explainer.meta_data["base"]
    tables = contrast_tables(
        mlp, x, pn=pn, pp=pp, pp_base=base,
        feature_names=split.feature_names, class_names=split.class_names,
    )  # fmt: skip
    with torch.no_grad():
        before, after = mlp(x).argmax(1), mlp(x + pn).argmax(1)
    for i, table in enumerate(tables):
        assert table.predicted == split.class_names[before[i]]
        assert table.after_pn == split.class_names[after[i]]
        names = [row.feature for row in table.rows]
        changed = [split.feature_names[j] for j in range(30) if pn[i, j] != 0 or pp[i, j] != 0]
        assert names == changed
        for row in table.rows:
            j = split.feature_names.index(row.feature)
            if row.pn_change is not None:
                assert row.pn_value == pytest.approx(float(x[i, j] + pn[i, j]), abs=1e-5)
        assert table.predicted in str(table) and "PN change" in str(table)


@pytest.mark.parametrize(
    "options, name",
    [
        ({"no_info_value": torch.zeros(7)}, "no_info_value"),
        ({"feature_range": torch.zeros(10, 29)}, "feature_range"),
        ({"feature_range": torch.full((4, 30), float("nan"))}, "feature_range"),
        ({"no_info_value": "middle"}, "no_info_value"),
        ({"segments": torch.zeros(29, dtype=torch.long)}, "segments"),
        ({"scores": "odds"}, "scores"),
    ],
)
def test_bad_table_options_are_named(
    split: TableSplit, mlp: nn.Module, options: dict, name: str
) -> None:
    with pytest.raises(ValueError, match=name):
        CEMExplainer().calculate_features(mlp, split.x_test[:4], num_iter=2, c_steps=1, **options)


def test_contrast_tables_refuse_bad_arguments(split: TableSplit, mlp: nn.Module) -> None:
    x = split.x_test[:2]
    with pytest.raises(ValueError, match="pp_base"):
        contrast_tables(mlp, x, pp=torch.zeros_like(x))
    with pytest.raises(ValueError, match="feature_names"):
        contrast_tables(mlp, x, feature_names=["a"])
    with pytest.raises(ValueError, match="pn"):
        contrast_tables(mlp, x, pn=torch.zeros(2, 3))
