"""The figure of a hyperparameter search: the trials over the two searched parameters,
coloured by validation accuracy, on one matplotlib Axes with a colour bar (constrained
layout)."""

from __future__ import annotations

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from initscope.figures.canvas import Canvas, encode, figure_size, style
from initscope.jobs import FigureOptions
from initscope.training.search import SearchResult

__all__ = ["build_search_figure", "render_search"]

_LABELS = {
    "learning_rate": "learning rate",
    "weight_decay": "weight decay (L2)",
    "dropout": "dropout rate",
    "momentum": "momentum",
}


def build_search_figure(result: SearchResult, options: FigureOptions) -> Figure:
    """The trials over the two searched hyperparameters, coloured by validation accuracy;
    the best circled. An axis is logarithmic when its values are positive and span more than
    a factor of 20."""
    with style():
        fig = Figure(figsize=figure_size(options, 6.0, 4.5), dpi=options.dpi, layout="constrained")
        Canvas(fig)
        ax = fig.subplots()
        x = np.array([t.x for t in result.trials])
        y = np.array([t.y for t in result.trials])
        acc = np.array([t.val_accuracy for t in result.trials])
        points = ax.scatter(x, y, c=acc, cmap="viridis", norm=Normalize(0.0, 1.0), s=28)
        best = result.trials[0]
        ax.scatter([best.x], [best.y], s=140, facecolors="none", edgecolors="#d55e00", lw=1.5)
        for values, setter in ((x, ax.set_xscale), (y, ax.set_yscale)):
            if values.min() > 0 and values.max() / values.min() > 20:
                setter("log")
        ax.set_xlabel(_LABELS.get(result.x_param, result.x_param))
        ax.set_ylabel(_LABELS.get(result.y_param, result.y_param))
        fig.colorbar(points, ax=ax, label="validation accuracy")
        ax.set_title(
            f"{len(result.trials)} trials; best {best.val_accuracy:.3f} at "
            f"({best.x:.3g}, {best.y:.3g}), median {result.median_val_accuracy:.3f}",
            fontsize=9,
        )
    return fig


def render_search(result: SearchResult, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_search_figure`; top-level and picklable."""
    return encode(build_search_figure(result, options), options)
