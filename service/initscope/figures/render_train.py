"""Figures of training runs and searches (Agg canvas, never pyplot), built like the sweep's
heatmap in :mod:`initscope.figures.render` and saved by its encoder: same style, same
reproducible bytes."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from initscope.figures.render import _Canvas, _encode, _style
from initscope.jobs import FigureOptions
from initscope.training.loop import TrainComparison
from initscope.training.search import SearchResult

# Okabe-Ito, one colour per variant (at most 8).
COLORS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")
_LABELS = {
    "learning_rate": "learning rate",
    "weight_decay": "weight decay (L2)",
    "dropout": "dropout rate",
    "momentum": "momentum",
}


def _size(options: FigureOptions, width_in: float, height_in: float) -> tuple[float, float]:
    if options.width and options.height:
        return options.width / options.dpi, options.height / options.dpi
    if options.width:
        return options.width / options.dpi, height_in * options.width / options.dpi / width_in
    if options.height:
        return width_in * options.height / options.dpi / height_in, options.height / options.dpi
    return width_in, height_in


def _finite(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def build_training_figure(comparison: TrainComparison, options: FigureOptions) -> Figure:
    """Left: training (solid) and validation (dashed) loss per epoch, one colour per run.
    Right: training and validation accuracy the same way; the gap between the two lines of a
    run is its overfitting."""
    with _style():
        fig = Figure(figsize=_size(options, 10.0, 4.0), dpi=options.dpi, layout="constrained")
        _Canvas(fig)
        loss_ax, acc_ax = fig.subplots(1, 2)
        log = True
        for color, variant in zip(COLORS, comparison.variants, strict=False):
            history = variant.result.history
            epochs = [e.epoch for e in history]
            for ax, train, val in (
                (loss_ax, [e.train_loss for e in history], [e.val_loss for e in history]),
                (acc_ax, [e.train_accuracy for e in history], [e.val_accuracy for e in history]),
            ):
                ax.plot(epochs, _finite(list(train)), color=color, lw=1.4, label=variant.name)
                ax.plot(epochs, _finite(list(val)), color=color, lw=1.4, ls="--")
            losses = [v for e in history for v in (e.train_loss, e.val_loss) if v is not None]
            log = log and all(v > 0 for v in losses)
        if log:
            loss_ax.set_yscale("log")
        chance = comparison.variants[0].result.chance_accuracy
        acc_ax.axhline(chance, color="0.6", lw=0.8, ls=":")
        acc_ax.set_ylim(0.0, 1.02)
        loss_ax.set_title("cross-entropy loss (solid: training, dashed: validation)", fontsize=9)
        acc_ax.set_title(f"accuracy (dotted: chance {chance:.2f})", fontsize=9)
        for ax in (loss_ax, acc_ax):
            ax.set_xlabel("epoch")
        loss_ax.legend(fontsize=7, frameon=False)
        first = comparison.variants[0].result
        fig.suptitle(
            f"{first.train_rows} training / {first.val_rows} validation rows, "
            f"{first.classes} classes, seed {first.seed}",
            fontsize=10,
        )
    return fig


def build_search_figure(result: SearchResult, options: FigureOptions) -> Figure:
    """The trials over the two searched hyperparameters, coloured by validation accuracy;
    the best circled."""
    with _style():
        fig = Figure(figsize=_size(options, 6.0, 4.5), dpi=options.dpi, layout="constrained")
        _Canvas(fig)
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


def render_training(comparison: TrainComparison, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_training_figure`; top-level and picklable."""
    return _encode(build_training_figure(comparison, options), options)


def render_search(result: SearchResult, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_search_figure`; top-level and picklable."""
    return _encode(build_search_figure(result, options), options)
