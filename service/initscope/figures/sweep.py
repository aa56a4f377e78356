"""The figure of a sweep: a heatmap of the metric over the two swept parameters, one matplotlib
Axes per grid (simulation, theory) laid out by the constrained layout engine, with a colour
bar and the theoretical edge of chaos (chi_1 = 1) drawn over it; verdicts and phases as
labelled category cells."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, get_args

import matplotlib as mpl
import numpy as np
from matplotlib.colors import (
    BoundaryNorm,
    Colormap,
    ListedColormap,
    LogNorm,
    Normalize,
    TwoSlopeNorm,
)
from matplotlib.figure import Figure

from initscope.engine.sweep import SweepJob, SweepResult
from initscope.figures.canvas import Canvas, encode, style
from initscope.jobs import FigureOptions
from initscope.results import FindingCode

__all__ = ["build_sweep_figure", "render_sweep"]


_SWEEP_LABELS = {
    "sigma_w2": "sigma_w^2 (fan_in Var W)",
    "std": "weight std",
    "sigma_b2": "sigma_b^2 (Var b)",
    "depth": "depth",
    "width": "width",
}
_METRIC_LABELS = {
    "first_to_last": "gradient RMS, layer 1 / last",
    "last_std": "last layer activation std",
    "chi_1": "chi_1",
    "xi_c": "xi_c (layers)",
    "verdict": "verdict / phase",
}


def build_sweep_figure(result: SweepResult, options: FigureOptions) -> Figure:
    """Heatmap(s) of the metric over the grid, log colour when it spans decades, with the
    theoretical edge of chaos drawn over it in the axes' own units."""
    grids = [
        (name, grid)
        for name, grid in (("simulation", result.simulation), ("theory", result.theory))
        if grid is not None
    ]
    if result.job.metric == "verdict":
        return _category_figure(result, options, grids)
    values = np.array(
        [[np.nan if v is None else v for v in row] for _, grid in grids for row in grid],
        dtype=np.float64,
    )
    known = values[np.isfinite(values)]
    positive = known[known > 0]
    log = 0 < positive.size == known.size and positive.max() / positive.min() > 100
    shown = positive if log else known
    low = float(shown.min()) if shown.size else 0.0
    high = float(shown.max()) if shown.size else 1.0
    if low == high:
        low, high = (low * 0.9, high * 1.1) if low > 0 else (low - 1.0, high + 1.0)
    centred = result.job.metric in ("first_to_last", "chi_1") and low < 1 < high
    norm: Normalize
    if centred and log:  # ratios: 1 is neutral, so colour symmetrically in log around it
        reach = max(high, 1 / low)
        norm = LogNorm(1 / reach, reach)
    elif centred:
        norm = TwoSlopeNorm(1.0, low, high)
    else:
        norm = LogNorm(low, high) if log else Normalize(low, high)

    width_in = 0.5 + 4.2 * len(grids) + 1.0
    height_in = 4.0
    if options.width and options.height:
        width_in, height_in = options.width / options.dpi, options.height / options.dpi
    with style():
        cmap = "RdBu_r" if centred else "viridis"  # diverging where 1 is the neutral value
        return _sweep_figure(result, options, grids, (norm, cmap), (width_in, height_in))


def _sweep_figure(
    result: SweepResult,
    options: FigureOptions,
    grids: Sequence[tuple[str, Grid]],
    colour: tuple[Normalize, str | Colormap],
    size: tuple[float, float],
    labels: Sequence[str] = (),
) -> Figure:
    job = result.job
    norm, cmap = colour
    fig = Figure(figsize=size, dpi=options.dpi, layout="constrained")
    Canvas(fig)
    axes = fig.subplots(1, len(grids), squeeze=False)[0]
    # Cells sit on an index grid labelled with the values: sweeps are often geometric, and
    # equal cells read better than cells as wide as the gaps between values.
    x = np.arange(len(job.x_values), dtype=np.float64)
    y = np.arange(len(job.y_values), dtype=np.float64)
    mesh = None
    for ax, (name, grid) in zip(axes, grids, strict=True):
        data = np.array([[np.nan if v is None else v for v in row] for row in grid])
        log = isinstance(norm, LogNorm)
        masked = np.ma.masked_invalid(np.where(data > 0, data, np.nan) if log else data)
        mesh = ax.pcolormesh(_cell_edges(x), _cell_edges(y), masked, norm=norm, cmap=cmap)
        if labels:  # categories: name every cell, the colour alone would need a legend
            for (row, col), code in np.ndenumerate(data):
                if np.isfinite(code):
                    ax.text(
                        x[col],
                        y[row],
                        labels[int(code)].replace("_", "\n"),
                        ha="center",
                        va="center",
                        fontsize=6.5,
                    )
        ax.set_xticks(x, [f"{v:g}" for v in job.x_values])
        ax.set_yticks(y, [f"{v:g}" for v in job.y_values])
        ax.set_xlabel(_SWEEP_LABELS[job.x_param])
        ax.set_ylabel(_SWEEP_LABELS[job.y_param])
        ax.set_title(f"{name}: {_METRIC_LABELS[job.metric]}", fontsize=10)
        cx, cy = _critical_in_axes(job, result.critical) if result.critical else ([], [])
        if cx:
            ax.plot(cx, cy, color="white", lw=3.0)
            ax.plot(cx, cy, color="black", lw=1.3, ls="--")
            ax.annotate(
                "χ₁ = 1",
                (cx[-1], cy[-1]),
                xytext=(4, 0),
                textcoords="offset points",
                fontsize=9,
                va="center",
                bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none", "alpha": 0.8},
            )
            ax.set_xlim(_cell_edges(x)[0], _cell_edges(x)[-1])
            ax.set_ylim(_cell_edges(y)[0], _cell_edges(y)[-1])
    if mesh is not None and not labels:
        fig.colorbar(mesh, ax=list(axes), label=_METRIC_LABELS[job.metric])
    fig.suptitle(
        f"{job.activation.label}: {_METRIC_LABELS[job.metric]} · "
        f"{'depth ' + str(job.depth) if 'depth' not in (job.x_param, job.y_param) else ''} "
        f"{'width ' + str(job.width) if 'width' not in (job.x_param, job.y_param) else ''}"
        f" · {result.critical_note}",
        fontsize=10,
    )
    return fig


Grid = tuple[tuple[float | str | None, ...], ...]

# A fixed colour per category, so one verdict looks the same in every figure.
_CATEGORIES = ("healthy", "ordered", "critical", "chaotic", *get_args(FindingCode))


def _category_figure(
    result: SweepResult, options: FigureOptions, grids: Sequence[tuple[str, Grid]]
) -> Figure:
    """Verdicts (simulation) and phases (theory) as coloured, labelled cells."""
    present = {v for _, grid in grids for row in grid for v in row if isinstance(v, str)}
    labels = [c for c in _CATEGORIES if c in present]
    index = {label: i for i, label in enumerate(labels)}
    coded = [
        (
            name,
            tuple(
                tuple(float(index[v]) if isinstance(v, str) else None for v in row) for row in grid
            ),
        )
        for name, grid in grids
    ]
    palette = [mpl.colormaps["tab20"](_CATEGORIES.index(label) % 20) for label in labels]
    cmap = ListedColormap(palette or ["white"])
    norm = BoundaryNorm(np.arange(-0.5, max(len(labels), 1)), cmap.N)
    size = (0.5 + 4.2 * len(grids), 4.0)
    if options.width and options.height:
        size = (options.width / options.dpi, options.height / options.dpi)
    with style():
        return _sweep_figure(result, options, coded, (norm, cmap), size, labels)


def _cell_edges(
    centres: np.ndarray[Any, np.dtype[np.float64]],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Edges between grid values (each value a cell centre); a single value gets width 1."""
    if centres.size == 1:
        return np.array([centres[0] - 0.5, centres[0] + 0.5])
    mids = (centres[1:] + centres[:-1]) / 2
    first = centres[0] - (mids[0] - centres[0])
    last = centres[-1] + (centres[-1] - mids[-1])
    return np.concatenate([[first], mids, [last]])


def _critical_in_axes(
    job: SweepJob, curve: Sequence[tuple[float, float]]
) -> tuple[list[float], list[float]]:
    """The curve's (sigma_w2, sigma_b2) points in the plot's x and y units."""

    def unit(param: str, sigma_w2: float, sigma_b2: float) -> float:
        if param == "sigma_b2":
            return sigma_b2
        if param == "std":
            return math.sqrt(sigma_w2 / job.width)
        return sigma_w2

    xs = np.array([unit(job.x_param, w, b) for w, b in curve])
    ys = np.array([unit(job.y_param, w, b) for w, b in curve])
    inside = _within(xs, job.x_values) & _within(ys, job.y_values)
    return (
        _to_index(xs[inside], job.x_values).tolist(),
        _to_index(ys[inside], job.y_values).tolist(),
    )


def _within(values: np.ndarray[Any, np.dtype[np.float64]], grid: Sequence[float]) -> Any:
    return (values >= min(grid)) & (values <= max(grid))


def _to_index(
    values: np.ndarray[Any, np.dtype[np.float64]], grid: Sequence[float]
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Positions on the index grid, linear between neighbouring grid values."""
    order = np.argsort(grid)
    ordered = np.asarray(grid, dtype=np.float64)[order]
    positions: np.ndarray[Any, np.dtype[np.float64]] = np.interp(
        values, ordered, order.astype(np.float64)
    )
    return positions


def render_sweep(result: SweepResult, options: FigureOptions) -> bytes:
    """Top-level and picklable: the sweep's figure as PNG or SVG bytes."""
    return encode(build_sweep_figure(result, options), options)
