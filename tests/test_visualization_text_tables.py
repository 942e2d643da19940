"""Token and table attributions drawn: colours follow the sign and size of each attribution, the
text is the tokens' own (escaped), and bad arguments are named."""

from __future__ import annotations

import re

import pytest
import torch

from foxcem.viz import plot_feature_attributions, text_attribution_html, visualize_text

pytest.importorskip("matplotlib")

TOKENS = [["a", "<great>", "film"], ["not", "good", "!"]]
SCORES = torch.tensor([[0.1, 2.0, 0.0], [-1.0, 0.5, 0.25]])


def test_html_colours_follow_sign_and_size() -> None:
    html = text_attribution_html(TOKENS, SCORES, labels=["pos", "neg"])
    spans = re.findall(
        r'title="([^"]+)" style="background:rgba\((\d+), (\d+), (\d+), ([\d.]+)\)', html
    )
    assert len(spans) == 6
    for (title, r, _, b, _alpha), value in zip(spans, SCORES.flatten().tolist()):
        assert float(title) == pytest.approx(value, abs=1e-3)
        assert (int(r) > int(b)) == (value >= 0)  # red for positive, blue for negative
    row_max = SCORES.abs().amax(dim=1, keepdim=True)
    expected = (SCORES.abs() / row_max * 0.85).flatten().tolist()
    assert [float(s[4]) for s in spans] == pytest.approx(expected, abs=1e-3)
    assert "&lt;great&gt;" in html and "<great>" not in html  # tokens are escaped
    assert html._repr_html_() == str(html)


def test_embedding_attributions_are_summed_per_token() -> None:
    per_dim = SCORES[..., None].expand(2, 3, 4) / 4
    assert text_attribution_html(TOKENS, per_dim) == text_attribution_html(TOKENS, SCORES)


def test_figures_draw_every_token_and_feature() -> None:
    fig = visualize_text(TOKENS, SCORES, labels=["pos", "neg"], title="t")
    texts = [t.get_text() for t in fig.axes[0].texts]
    assert [t for t in texts if t not in ("pos", "neg")] == [t for row in TOKENS for t in row]
    fig = plot_feature_attributions(torch.tensor([[3.0, -5.0, 1.0]]), ["a", "b", "c"], top_k=2)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels == ["a", "b"]  # the two largest in magnitude, the largest on top


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: text_attribution_html([["a", "b"]], torch.zeros(1, 3)), "tokens"),
        (lambda: text_attribution_html("ab", torch.zeros(2)), "tokens"),
        (lambda: text_attribution_html([["a", 1]], torch.zeros(1, 2)), "tokens"),
        (lambda: text_attribution_html([["a"]], torch.zeros(1, 1), labels=["x", "y"]), "labels"),
        (lambda: text_attribution_html([["a"]], "scores"), "attributions"),
        (lambda: plot_feature_attributions(torch.zeros(2, 3), ["a"]), "feature_names"),
        (lambda: plot_feature_attributions(torch.zeros(2, 3), values=torch.zeros(4)), "values"),
        (lambda: plot_feature_attributions(torch.zeros(2, 3, 4)), "attributions"),
    ],
)
def test_bad_arguments_are_named(call, name: str) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        call()
