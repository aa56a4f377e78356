"""The figure of training runs: loss and accuracy per epoch, training and validation, one
colour per run, on two matplotlib Axes laid out by the constrained layout engine."""

from __future__ import annotations

import math

from matplotlib.figure import Figure

from initscope.figures.canvas import Canvas, encode, figure_size, style
from initscope.jobs import FigureOptions
from initscope.training.loop import TrainComparison

__all__ = ["build_training_figure", "render_training"]

# Okabe-Ito, one colour per variant (at most 8).
COLORS = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000", "#f0e442")


def _finite(values: list[float | None]) -> list[float]:
    return [math.nan if v is None else v for v in values]


def build_training_figure(comparison: TrainComparison, options: FigureOptions) -> Figure:
    """Left: training (solid) and validation (dashed) loss per epoch, one colour per run.
    Right: training and validation accuracy the same way; the gap between the two lines of a
    run is its overfitting."""
    with style():
        fig = Figure(figsize=figure_size(options, 10.0, 4.0), dpi=options.dpi, layout="constrained")
        Canvas(fig)
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


def render_training(comparison: TrainComparison, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_training_figure`; top-level and picklable."""
    return encode(build_training_figure(comparison, options), options)
