"""The demo's summary as a plain-text table."""

from __future__ import annotations

from typing import Any

__all__ = ["format_table"]


def format_table(summary: dict[str, Any]) -> str:
    """The summary as a plain-text table (one row per method)."""
    model = summary["model"]
    lines = [
        f"digits CNN test accuracy: {100 * model['test_accuracy']:.1f}% "
        f"({'cached weights' if model.get('cached') else 'trained'}), "
        f"{summary['num_images']} digits explained on {summary['device']}",
        "",
    ]
    header = ("method", "time [s]", "success", "mean |δ|₁", "mean |δ|₀ (>0.01)", "mean |conv. δ|")
    rows = [header]
    for stats in summary["methods"].values():
        success = l1 = l0 = conv = "-"
        if "success_rate" in stats:
            verb = "keeps" if stats["mode"] == "PP" else "flips"
            success = f"{stats['successes']}/{summary['num_images']} {verb}"
            l1 = f"{stats['mean_l1']:.3f}"
            l0 = f"{stats['mean_l0']:.1f}"
        if "mean_abs_convergence_delta" in stats:
            conv = f"{stats['mean_abs_convergence_delta']:.2e}"
        rows.append((stats["label"], f"{stats['seconds']:.2f}", success, l1, l0, conv))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:])]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    lines.append("")
    lines.append(f"total {summary['total_seconds']:.1f} s")
    return "\n".join(lines)
