"""The review page's plots, drawn with matplotlib and embedded as inline SVG.

- `score_histogram`: the distribution of a score (similarity or margin) for the samples
  judged label-correct and label-wrong, with the decision's cut as a vertical line.
- `confusion_bars`: the most frequent label -> suggested-class pairs.
Each is a few kilobytes whatever the number of samples (BINS bars per group).
"""

from __future__ import annotations

import io

import numpy as np

BINS = 50
CORRECT_COLOUR, WRONG_COLOUR = "#2b8a3e", "#c92a2a"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.fonttype"] = "none"  # text as text: smaller and selectable
    matplotlib.rcParams["svg.hashsalt"] = "cleannet-review"  # the same SVG for the same data
    import matplotlib.pyplot as plt

    return plt


def _svg(figure) -> str:
    plt = _pyplot()
    buffer = io.StringIO()
    figure.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(figure)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prologue and doctype: the SVG goes inline


def score_histogram(values: np.ndarray, verdict: np.ndarray, name: str, cut: float | None) -> str:
    """SVG: histogram of `values` (float [n], finite ones used) for verdict 1 and 0 (int [n])."""
    plt = _pyplot()
    values = np.asarray(values, np.float64)
    finite = np.isfinite(values)
    figure, axes = plt.subplots(figsize=(5.2, 2.6))
    if finite.any():
        low, high = float(values[finite].min()), float(values[finite].max())
        edges = np.linspace(low, high if high > low else low + 1e-6, BINS + 1)
        for judged, colour, label in ((1, CORRECT_COLOUR, "label judged correct"),
                                      (0, WRONG_COLOUR, "label judged wrong")):
            chosen = values[finite & (verdict == judged)]
            axes.hist(chosen, bins=edges, color=colour, alpha=0.6, label="%s (%d)" % (label, len(chosen)))
    if cut is not None:
        axes.axvline(cut, color="black", linestyle="--", linewidth=1, label="decision cut %.3g" % cut)
    axes.set_xlabel(name)
    axes.set_ylabel("samples")
    axes.legend(fontsize=7, frameon=False)
    return _svg(figure)


def confusion_bars(pairs: list[tuple[str, str, int]]) -> str:
    """SVG: horizontal bars of (label, suggested class, count), most frequent on top."""
    plt = _pyplot()
    figure, axes = plt.subplots(figsize=(5.2, 0.6 + 0.22 * max(1, len(pairs))))
    names = ["%s -> %s" % (label, suggested) for label, suggested, _ in pairs]
    axes.barh(np.arange(len(pairs)), [count for _, _, count in pairs], color=WRONG_COLOUR, alpha=0.7)
    axes.set_yticks(np.arange(len(pairs)), names, fontsize=7)
    axes.invert_yaxis()
    axes.set_xlabel("samples judged wrong, label -> suggested class")
    return _svg(figure)
