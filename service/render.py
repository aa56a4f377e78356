"""Figures of a result: matplotlib's object API on the Agg canvas (never pyplot), PNG or SVG.

Everything drawn comes from the frozen result -- histogram counts and edges, per-layer
statistics -- and nothing is recomputed from activations. The same result and options give
the same bytes: no dates or software versions in the metadata, a fixed SVG hash salt, fonts
named explicitly (DejaVu Sans ships with matplotlib).

No layout engine runs: text sizes are measured with the font (``text_to_path``, no drawing)
and the subplot parameters are computed from them, in points, so nothing overlaps at any
figure size the panels fit in. Ticks are few and fixed (a tick is the costliest artist), and
every axis limit is set explicitly, so drawing needs no autoscaling pass.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any

import matplotlib as mpl
import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.gridspec import GridSpec
from matplotlib.textpath import text_to_path
from matplotlib.ticker import NullLocator

from service.jobs import FigureOptions
from service.results import Analysis, Comparison, Histogram, LayerResult

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # not in every matplotlib >= 3.9 at runtime

__all__ = [
    "build_analysis_figure",
    "build_comparison_figure",
    "render_analysis",
    "render_comparison",
]

FONT = "DejaVu Sans"
MAX_COLUMNS = 6
COLUMN_IN = 2.2  # inches per panel column (panel + gap) when the size is derived
ROW_IN = 2.0  # inches per panel row

# Font sizes (pt).
TICK_PT = 6.5
LABEL_PT = 7.0
PANEL_TITLE_PT = 8.0
TITLE_PT = 10.0
FOOTER_PT = 7.5
NOTE_PT = 6.0
ROW_LABEL_PT = 8.5
LINE_SPACING = 1.25  # line height / font size, for every multi-line text we place

# Axis furniture (pt).
TICK_LENGTH = 2.5
TICK_PAD = 2.0
LABEL_PAD = 2.0
TITLE_PAD = 4.0
EDGE = 6.0  # space between the figure edge and any text
GAP = 6.0  # clear space between unrelated texts

HIST_COLOR = "#0072b2"
GRADIENT_COLOR = "#d55e00"
GAIN_COLOR = "#009e73"
NOTE_COLOR = "#8a1c1c"

_RC: dict[RcKeyType, Any] = {
    "font.family": [FONT],
    "font.size": LABEL_PT,
    "axes.titlesize": PANEL_TITLE_PT,
    "axes.titlepad": TITLE_PAD,
    "axes.labelsize": LABEL_PT,
    "axes.labelpad": LABEL_PAD,
    "axes.linewidth": 0.6,
    "axes.unicode_minus": True,
    "xtick.labelsize": TICK_PT,
    "ytick.labelsize": TICK_PT,
    "xtick.major.size": TICK_LENGTH,
    "ytick.major.size": TICK_LENGTH,
    "xtick.major.pad": TICK_PAD,
    "ytick.major.pad": TICK_PAD,
    "xtick.major.width": 0.6,
    "ytick.major.width": 0.6,
    "xtick.minor.visible": False,
    "ytick.minor.visible": False,
    "lines.linewidth": 1.2,
    "lines.markersize": 3.5,
    "svg.hashsalt": "initscope",
    "svg.fonttype": "path",
    "path.simplify": True,
    # Unhinted glyphs: Agg draws text a glyph at a time and hinting each one costs a quarter
    # of the whole rendering; the shapes are the outlines' own.
    "text.hinting": "none",
}


@contextmanager
def _style() -> Iterator[None]:
    """The rc parameters every figure is built and saved under (read when artists are made)."""
    with mpl.rc_context(_RC):
        yield


class _Canvas(FigureCanvasAgg):
    """The Agg canvas, drawing and saving under this module's rc parameters whoever asks: the
    layout's text measurements assume them (unhinted glyphs)."""

    def draw(self) -> None:
        with _style():
            super().draw()  # type: ignore[no-untyped-call]  # backend_agg has no stubs

    def print_figure(self, *args: Any, **kwargs: Any) -> Any:
        with _style():
            return super().print_figure(*args, **kwargs)


# --- text measurement and formatting -------------------------------------------------------


def _font(size: float, weight: str = "normal") -> FontProperties:
    return FontProperties(family=FONT, size=size, weight=weight)


def _width(text: str, size: float, weight: str = "normal") -> float:
    """Width in points of ``text`` (its widest line) set in ``size``-point DejaVu Sans: the sum
    of its characters' advances (kerning, which only tightens, ignored)."""
    return max(sum(_advance(char, size, weight) for char in line) for line in text.split("\n"))


@functools.lru_cache(maxsize=4096)
def _advance(char: str, size: float, weight: str) -> float:
    """One character's advance in points. Memoised: loading a glyph is what measuring costs
    (~10 us a character), and the figures use few distinct characters."""
    prop = _font(size, weight)
    return float(text_to_path.get_text_width_height_descent(char, prop, ismath=False)[0])


def _height(lines: int, size: float) -> float:
    return lines * size * LINE_SPACING


def _wrap(text: str, width_pt: float, size: float, weight: str = "normal") -> list[str]:
    """``textwrap`` to the widest character count whose every line fits ``width_pt``."""
    if not text:
        return []
    chars = max(8, int(width_pt / (_width(text, size, weight) / len(text))))
    while True:
        lines = textwrap.wrap(text, chars, break_long_words=True)
        if chars <= 8 or all(_width(line, size, weight) <= width_pt for line in lines):
            return lines
        chars -= 1


def _fit(text: str, width_pt: float, size: float, weight: str = "normal") -> str:
    """``text`` cut with an ellipsis to fit ``width_pt``."""
    if _width(text, size, weight) <= width_pt:
        return text
    while len(text) > 1 and _width(text + "…", size, weight) > width_pt:
        text = text[:-1]
    return text.rstrip() + "…"


def _number(value: float) -> str:
    """Compact tick label: 3 significant digits, exponent without padding, a real minus."""
    if value == 0:
        return "0"
    text = f"{value:.2g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text.replace("-", "\N{MINUS SIGN}")


def _count(n: int) -> str:
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.3g}k"
    return f"{n / 1e6:.3g}M"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def _decade(exponent: int) -> str:
    return "1" if exponent == 0 else f"10{str(exponent).translate(_SUPERSCRIPT)}"


# --- ticks and limits ----------------------------------------------------------------------


def _fraction_ticks(top: float) -> list[float]:
    """0 and two to four round fractions up to ``top``."""
    raw = top / 4
    step = 10.0 ** math.floor(math.log10(raw))
    for multiple in (1.0, 2.0, 2.5, 5.0, 10.0):
        if multiple * step >= raw:
            step *= multiple
            break
    return [round(step * i, 12) for i in range(int(top / step) + 1) if step * i <= top]


def _layer_ticks(depth: int, span_pt: float) -> list[int]:
    """Layer numbers to label across ``span_pt`` points: every layer when there is room (and
    depth <= 5), else multiples of a round step (and layer 1), at least a label's width apart."""
    per_layer = span_pt / depth
    room = _width(str(depth), TICK_PT) + 4
    step = next(
        (
            s
            for s in (1, 2, 5, 10, 20, 50, 100, 200, 500)
            if depth / s <= 5 and s * per_layer >= room
        ),
        depth,
    )
    ticks = list(range(step, depth + 1, step))
    return [1, *ticks] if (step > 2 and (step - 1) * per_layer >= room) or not ticks else ticks


def _log_limits(values: Sequence[float]) -> tuple[float, float]:
    """Decade-aligned (log10) limits around the positive ``values``, with a little air."""
    if not values:
        return -1.0, 1.0
    low = math.floor(math.log10(min(values)) - 0.15)
    high = math.ceil(math.log10(max(values)) + 0.15)
    # 10**-300 .. 10**300 stay normal floats; a (subnormal) value beyond is off the axis.
    return float(max(low, -300)), float(min(max(high, -299), 300))


def _set_log_y(ax: Axes, low: float, high: float) -> None:
    """Log y axis over ``[10**low, 10**high]``, labelled at (at most 5) whole decades."""
    ax.set_yscale("log")
    ax.set_ylim(10.0**low, 10.0**high)
    step = max(1, math.ceil((high - low) / 4))
    exponents = [e for e in range(int(low), int(high) + 1) if e % step == 0]  # 1 when in range
    ax.set_yticks([10.0**e for e in exponents], [_decade(e) for e in exponents])
    ax.yaxis.set_minor_locator(NullLocator())


def _positive(values: Sequence[float | None]) -> list[float]:
    return [v for v in values if v is not None and v > 0]


# --- panels --------------------------------------------------------------------------------


def _fractions(histogram: Histogram) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Counts per bin as a fraction of all of the layer's values (out-of-range ones included)."""
    counts = np.asarray(histogram.counts, dtype=np.float64)
    total = histogram.total
    return counts / total if total else counts


def _flow_notes(histogram: Histogram) -> tuple[list[str], list[str]]:
    """Texts for the values the bins do not show: (top-left lines, top-right lines)."""
    left = [f"◂ {_count(histogram.underflow)} below"] if histogram.underflow else []
    right = [f"{_count(histogram.overflow)} above ▸"] if histogram.overflow else []
    if histogram.non_finite:
        right.append(f"{_count(histogram.non_finite)} NaN/inf")
    return left, right


def _histogram_panel(ax: Axes, histogram: Histogram, panel_w_pt: float) -> None:
    """One ``StepPatch`` of fractions over the stored edges, labelled at the range's ends."""
    edges = np.asarray(histogram.edges, dtype=np.float64)
    ax.stairs(_fractions(histogram), edges, fill=True, color=HIST_COLOR, linewidth=0)
    low, high = float(edges[0]), float(edges[-1])
    ax.set_xlim(low, high)
    labels = [_number(low), _number(high)]
    if sum(_width(label, TICK_PT) for label in labels) + GAP > panel_w_pt:
        labels[1] = ""  # too narrow for both: the low end and the axis' length tell the range
    ax.set_xticks([low, high], labels)
    # The end labels stay inside the panel, so neighbouring panels need no gap for them.
    tick_labels = ax.get_xticklabels()
    tick_labels[0].set_horizontalalignment("left")
    tick_labels[-1].set_horizontalalignment("right")
    left, right = _flow_notes(histogram)
    for lines, x, align in ((left, 0.03, "left"), (right, 0.97, "right")):
        if lines:
            ax.text(
                x,
                0.97,
                "\n".join(lines),
                transform=ax.transAxes,
                ha=align,
                va="top",
                fontsize=NOTE_PT,
                color=NOTE_COLOR,
                linespacing=LINE_SPACING,
            )


def _flow_lines(histograms: Sequence[Histogram]) -> int:
    return max((max(map(len, _flow_notes(h))) for h in histograms), default=0)


def _fraction_axis(ax: Axes, histograms: Sequence[Histogram], panel_h_pt: float) -> None:
    """The shared y range of the histogram panels, with headroom for the out-of-range notes."""
    peak = max((float(_fractions(h).max(initial=0.0)) for h in histograms), default=0.0)
    peak = peak if peak > 0 else 1.0
    notes = _flow_lines(histograms)
    room = (_height(notes, NOTE_PT) + 4) / panel_h_pt if notes else 0.0
    top = peak * 1.04 / max(1 - room, 0.3)
    ax.set_ylim(0, top)
    ticks = _fraction_ticks(peak)
    ax.set_yticks(ticks, [_number(t) for t in ticks])


def _line_labels(
    ax: Axes,
    depth: int,
    items: Sequence[tuple[str, str, float]],
    limits: tuple[float, float],
    height_pt: float,
) -> None:
    """Label each line (text, colour, last value) right of the last layer, at the height of
    its last point; labels that would touch are pushed apart, and kept inside the panel."""
    if not items:
        return
    low, high = limits
    placed = sorted(
        ((math.log10(value) - low) / (high - low), text, color) for text, color, value in items
    )
    # Half-heights of each label, as fractions of the panel height.
    halves = [
        _height(text.count("\n") + 1, LABEL_PT) / 2 / max(height_pt, 1.0) for _, text, _ in placed
    ]
    positions = [max(p, halves[0]) if i == 0 else p for i, (p, _, _) in enumerate(placed)]
    for i in range(1, len(positions)):
        positions[i] = max(positions[i], positions[i - 1] + halves[i - 1] + halves[i])
    overshoot = positions[-1] + halves[-1] - 1
    if overshoot > 0:
        positions = [p - overshoot for p in positions]
    for position, (_, text, color) in zip(positions, placed, strict=True):
        ax.annotate(
            text,
            xy=(depth, position),
            xycoords=("data", "axes fraction"),
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
            ha="left",
            fontsize=LABEL_PT,
            color=color,
            linespacing=LINE_SPACING,
        )


GRADIENT_LABEL = "grad RMS ÷ last"
GAIN_LABEL = "E[φ\N{PRIME}(a)²]"
# Narrow panels: the labels on two lines rather than squeezing the data.
NARROW_LABELS = {GRADIENT_LABEL: "grad RMS\n÷ last", GAIN_LABEL: GAIN_LABEL}


def _gradient_panel(
    ax: Axes,
    layers: Sequence[LayerResult],
    *,
    gain: bool,
    limits: tuple[float, float],
    panel_pt: tuple[float, float],
    labels: bool,
) -> None:
    """Output-gradient RMS relative to the last layer (and optionally E[phi'(a)^2]) per layer,
    on a log axis; points with no (or a non-positive) value are skipped."""
    depth = len(layers)
    series = [("gradient", GRADIENT_LABEL, GRADIENT_COLOR, "o")]
    if gain:
        series.append(("gain", GAIN_LABEL, GAIN_COLOR, "s"))
    low, high = limits
    ends: list[tuple[str, str, float]] = []
    for kind, label, color, marker in series:
        points = [
            (layer.index, value)
            for layer in layers
            if (
                value := (
                    layer.gradients.relative_to_last
                    if kind == "gradient"
                    else layer.mean_derivative_sq
                )
            )
            is not None
            and value > 0
        ]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, color=color, marker=marker, markersize=3.5, linewidth=1.2)
        ends.append((label, color, ys[-1]))
    if not ends:
        ax.text(
            0.5,
            0.5,
            "no finite gradients",
            transform=ax.transAxes,
            ha="center",
            va="center",
            fontsize=NOTE_PT,
            color=NOTE_COLOR,
        )
    # Room at the right for the labels: a fraction of the panel width in data units.
    room = 0.0
    if labels and ends:
        fraction = _label_room(ends, panel_pt[0])
        if fraction > 0.45:
            ends = [(NARROW_LABELS[text], color, value) for text, color, value in ends]
            fraction = _label_room(ends, panel_pt[0])
        fraction = min(fraction, 0.7)
        room = fraction * depth / (1 - fraction)
    ax.set_xlim(0.5, depth + 0.5 + room)
    ticks = _layer_ticks(depth, panel_pt[0] * depth / (depth + room))
    ax.set_xticks(ticks, [str(t) for t in ticks])
    _set_log_y(ax, low, high)
    ax.yaxis.tick_right()
    if labels:
        _line_labels(ax, depth, ends, limits, panel_pt[1])


def _label_room(items: Sequence[tuple[str, str, float]], panel_w_pt: float) -> float:
    """The fraction of the panel width the line labels need right of the last layer."""
    return (5 + max(_width(text, LABEL_PT) for text, _, _ in items) + 3) / max(panel_w_pt, 1.0)


def _gradient_values(layers: Sequence[LayerResult], *, gain: bool) -> list[float]:
    values = _positive([layer.gradients.relative_to_last for layer in layers])
    if gain:
        values += _positive([layer.mean_derivative_sq for layer in layers])
    return values


def _decade_label_width(limits: tuple[float, float]) -> float:
    low, high = limits
    return max(_width(_decade(e), TICK_PT) for e in range(int(low), int(high) + 1))


# --- layout --------------------------------------------------------------------------------

MIN_PANEL_W = 40.0  # pt: below this, the renderer trades pixels per point for room instead
MIN_PANEL_H = 32.0
MAX_DERIVED_PX = 4000  # a derived size never exceeds this many pixels a side
MIN_DPI = 10.0

# Vertical extent of an x axis's tick labels and of its label, below the panel (pt).
_XTICKS = TICK_LENGTH + TICK_PAD + _height(1, TICK_PT)
_XLABEL = LABEL_PAD + _height(1, LABEL_PT)
_PANEL_TITLE = TITLE_PAD + _height(1, PANEL_TITLE_PT)
_YTICK_ROOM = TICK_LENGTH + TICK_PAD + 2
_WGAP = 8.0


@dataclass(frozen=True)
class _Frame:
    """What surrounds the panel grid at a given figure width: margins in points, and the
    title and footer lines wrapped to that width."""

    top: float
    bottom: float
    title: tuple[str, ...]
    footer: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Plan:
    """A figure's size (points at ``dpi``) and where its ``rows x cols`` panels go."""

    rows: int
    cols: int
    left: float
    right: float
    hgap: float
    frame: _Frame
    width_pt: float
    height_pt: float
    dpi: float

    @property
    def panel_w(self) -> float:
        return (self.width_pt - self.left - self.right - (self.cols - 1) * _WGAP) / self.cols

    @property
    def panel_h(self) -> float:
        inner = self.height_pt - self.frame.top - self.frame.bottom
        return (inner - (self.rows - 1) * self.hgap) / self.rows


def _plan(
    rows: int,
    cols: int,
    options: FigureOptions,
    sides: tuple[float, float, float],
    frame_at: Callable[[float], _Frame],
) -> _Plan:
    """Size the figure: ``sides`` are the left and right margins and the row gap (pt);
    ``frame_at(width_pt)`` wraps the title and footer to a width.

    Without a size in the options, the figure is COLUMN_IN x ROW_IN per panel plus the
    frame, at most MAX_DERIVED_PX a side; with one, exactly ``width x height`` pixels. When
    the panels would get smaller than MIN_PANEL_W x MIN_PANEL_H points, the figure is drawn
    at a lower dpi -- the same pixels hold more points, so the text shrinks in pixels and
    still does not overlap.
    """
    left, right, hgap = sides
    dpi = float(options.dpi)
    for _ in range(12):
        limit = MAX_DERIVED_PX / dpi * 72
        if options.width is None:
            width_pt = min(left + right + cols * COLUMN_IN * 72 - _WGAP, limit)
        else:
            width_pt = options.width / dpi * 72
        frame = frame_at(width_pt)
        if options.height is None:
            height_pt = min(frame.top + frame.bottom + rows * ROW_IN * 72 - hgap, limit)
        else:
            height_pt = options.height / dpi * 72
        plan = _Plan(rows, cols, left, right, hgap, frame, width_pt, height_pt, dpi)
        need_w = left + right + cols * MIN_PANEL_W + (cols - 1) * _WGAP
        need_h = frame.top + frame.bottom + rows * MIN_PANEL_H + (rows - 1) * hgap
        fit = min(width_pt / need_w, height_pt / need_h)
        if fit >= 1 or dpi <= MIN_DPI:
            break
        # The canvas's points grow as 1/dpi; the frame may rewrap, hence the loop.
        dpi = max(dpi * fit * 0.99, MIN_DPI)
    return plan


def _figure(plan: _Plan) -> tuple[Figure, GridSpec]:
    """The figure of ``plan`` on an Agg canvas, and its panel grid."""
    width_pt, height_pt = plan.width_pt, plan.height_pt
    figure = Figure(
        figsize=(_inches(width_pt, plan.dpi), _inches(height_pt, plan.dpi)), dpi=plan.dpi
    )
    _Canvas(figure)
    grid = figure.add_gridspec(
        plan.rows,
        plan.cols,
        left=plan.left / width_pt,
        right=1 - plan.right / width_pt,
        bottom=plan.frame.bottom / height_pt,
        top=1 - plan.frame.top / height_pt,
        wspace=_WGAP / max(plan.panel_w, 1.0),
        hspace=plan.hgap / max(plan.panel_h, 1.0),
    )
    return figure, grid


def _inches(points: float, dpi: float) -> float:
    """``points / 72``, nudged so that Agg's ``int(inches * dpi)`` gives the rounded pixels."""
    pixels = max(round(points / 72 * dpi), 1)
    inches = pixels / dpi
    while int(inches * dpi) < pixels:
        inches = math.nextafter(inches, math.inf)
    return inches


def _summary(layers: Sequence[LayerResult]) -> str:
    """``5 x 100 sigmoid, normal(mean=0.0, std=1.0)`` from the layers' labels."""
    units = {layer.units for layer in layers}
    shape = (
        f"{len(layers)} x {layers[0].units}"
        if len(units) == 1
        else f"{len(layers)} layers of {min(units)}-{max(units)} units"
    )
    activations = {layer.activation for layer in layers}
    inits = {layer.init for layer in layers}
    activation = layers[0].activation if len(activations) == 1 else "mixed activations"
    init = layers[0].init if len(inits) == 1 else "mixed inits"
    return f"{shape} {activation}, {init}"


def _title_lines(parts: Sequence[str], width_pt: float) -> tuple[str, ...]:
    """The parts on one line joined by ' · ' when they fit, else one line each (wrapped)."""
    joined = "  ·  ".join(parts)
    if _width(joined, TITLE_PT) <= width_pt:
        return (joined,)
    return tuple(line for part in parts for line in _wrap(part, width_pt, TITLE_PT))


def _panel_grid(panels: int) -> tuple[int, int]:
    """Rows and columns for ``panels``: at most MAX_COLUMNS a row, rows balanced."""
    rows = math.ceil(panels / MAX_COLUMNS)
    return rows, math.ceil(panels / rows)


def _frac_tick_width(histograms: Sequence[Histogram]) -> float:
    peak = max((float(_fractions(h).max(initial=0.0)) for h in histograms), default=0.0)
    ticks = _fraction_ticks(peak if peak > 0 else 1.0)
    return max(_width(_number(t), TICK_PT) for t in ticks)


def _add_title(fig: Figure, plan: _Plan) -> None:
    fig.suptitle(
        "\n".join(plan.frame.title),
        x=0.5,
        y=1 - EDGE / plan.height_pt,
        ha="center",
        va="top",
        fontsize=TITLE_PT,
        linespacing=LINE_SPACING,
    )


# --- figures -------------------------------------------------------------------------------


def build_analysis_figure(result: Analysis, options: FigureOptions) -> Figure:
    """One histogram panel per layer ("1-layer", ...) and a final "gradient" panel.

    Histograms are the stored counts as fractions of each layer's values (out-of-range and
    non-finite ones included in the total, and noted in the panel's corners), on a y scale
    shared by all layers. The gradient panel shows RMS(dL/dh_l) / RMS(dL/dh_L) and
    E[phi'(a_l)^2] per layer on one log axis. Title: the verdict and the network; footer: the
    recommendation's reason.
    """
    with _style():
        return _analysis_figure(result, options)


def _analysis_figure(result: Analysis, options: FigureOptions) -> Figure:
    layers = result.simulation.layers
    histograms = [layer.activations.histogram for layer in layers]
    rows, cols = _panel_grid(len(layers) + 1)
    limits = _log_limits(_gradient_values(layers, gain=True))
    heading = [f"verdict: {result.diagnosis.verdict}", _summary(layers)]
    reason = f"Recommendation: {result.diagnosis.recommendation.reason}"

    def frame_at(width_pt: float) -> _Frame:
        title = _title_lines(heading, width_pt - 2 * EDGE)
        footer = tuple(_wrap(reason, width_pt - 2 * EDGE, FOOTER_PT))
        top = EDGE + _height(len(title), TITLE_PT) + GAP + _PANEL_TITLE
        bottom = EDGE + _height(len(footer), FOOTER_PT) + GAP + _XTICKS + _XLABEL
        return _Frame(top, bottom, title, footer)

    left = EDGE + _XLABEL + _frac_tick_width(histograms) + _YTICK_ROOM
    right = EDGE + _decade_label_width(limits) + _YTICK_ROOM
    hgap = _XTICKS + _XLABEL + GAP + _PANEL_TITLE
    plan = _plan(rows, cols, options, (left, right, hgap), frame_at)
    fig, grid = _figure(plan)
    panel = (plan.panel_w, plan.panel_h)

    first: Axes | None = None
    for i, histogram in enumerate(histograms):
        ax = fig.add_subplot(grid[i // cols, i % cols], sharey=first)
        _histogram_panel(ax, histogram, plan.panel_w)
        ax.set_title(f"{i + 1}-layer", y=1.0)
        if first is None:
            first = ax
            _fraction_axis(ax, histograms, plan.panel_h)
        if i % cols == 0:  # axis labels on the first column only: every panel is alike
            ax.set_xlabel("activation")
            ax.set_ylabel("fraction of values")
        else:
            ax.yaxis.set_visible(False)  # shared: the row's first panel carries the scale
    n = len(layers)
    ax = fig.add_subplot(grid[n // cols, n % cols])
    _gradient_panel(ax, layers, gain=True, limits=limits, panel_pt=panel, labels=True)
    ax.set_title("gradient", y=1.0)
    ax.set_xlabel("layer")

    _add_title(fig, plan)
    if plan.frame.footer:
        fig.text(
            EDGE / plan.width_pt,
            EDGE / plan.height_pt,
            "\n".join(plan.frame.footer),
            ha="left",
            va="bottom",
            fontsize=FOOTER_PT,
            linespacing=LINE_SPACING,
        )
    return fig


def build_comparison_figure(comparison: Comparison, options: FigureOptions) -> Figure:
    """A row per variant (its name and verdict at the left), a column per layer ("k-layer"),
    and a last "gradient" column whose panels share one log y axis. Rows of shallower
    variants leave their missing panels blank."""
    with _style():
        return _comparison_figure(comparison, options)


def _comparison_figure(comparison: Comparison, options: FigureOptions) -> Figure:
    variants = comparison.variants
    if not variants:
        raise ValueError("a comparison needs at least one variant")
    analyses = [variant.analysis for variant in variants]
    depths = [len(a.simulation.layers) for a in analyses]
    depth = max(depths)
    rows, cols = len(variants), depth + 1
    histograms = [layer.activations.histogram for a in analyses for layer in a.simulation.layers]
    limits = _log_limits(
        [v for a in analyses for v in _gradient_values(a.simulation.layers, gain=False)]
    )
    verdicts = [f"verdict: {a.diagnosis.verdict}" for a in analyses]

    def frame_at(width_pt: float) -> _Frame:
        title = _title_lines(["initscope comparison"], width_pt - 2 * EDGE)
        top = EDGE + _height(len(title), TITLE_PT) + GAP + _PANEL_TITLE
        return _Frame(top, EDGE + _XTICKS + _XLABEL, title)

    def planned(name_lines: int) -> _Plan:
        row_label = _height(name_lines, ROW_LABEL_PT) + _height(1, LABEL_PT) + GAP
        left = EDGE + row_label + _XLABEL + _frac_tick_width(histograms) + _YTICK_ROOM
        right = EDGE + _XLABEL + _decade_label_width(limits) + _YTICK_ROOM
        return _plan(rows, cols, options, (left, right, _XTICKS + _XLABEL + GAP), frame_at)

    # Row labels run along the row's height: names that do not fit there take two lines.
    plan = planned(1)
    names = [_wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    name_lines = min(max(map(len, names)), 2)
    if name_lines > 1:
        plan = planned(name_lines)
        names = [_wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    fig, grid = _figure(plan)
    panel = (plan.panel_w, plan.panel_h)

    first_hist: Axes | None = None
    first_grad: Axes | None = None
    for r, analysis in enumerate(analyses):
        layers = analysis.simulation.layers
        for c in range(depth):
            ax = fig.add_subplot(grid[r, c], sharey=first_hist)
            if c >= len(layers):
                ax.set_axis_off()
                continue
            _histogram_panel(ax, layers[c].activations.histogram, plan.panel_w)
            if first_hist is None:
                first_hist = ax
                _fraction_axis(ax, histograms, plan.panel_h)
            if r == 0:
                ax.set_title(f"{c + 1}-layer", y=1.0)
            # The x label goes under the lowest panel of each column only.
            if all(d <= c for d in depths[r + 1 :]):
                ax.set_xlabel("activation")
            if c == 0:
                ax.set_ylabel("fraction of values")
            else:
                ax.yaxis.set_visible(False)  # shared: the row's first panel carries the scale
        ax = fig.add_subplot(grid[r, depth], sharey=first_grad)
        _gradient_panel(ax, layers, gain=False, limits=limits, panel_pt=panel, labels=False)
        ax.yaxis.set_label_position("right")
        ax.set_ylabel("grad RMS ÷ last")
        if first_grad is None:
            first_grad = ax
        if r == 0:
            ax.set_title("gradient", y=1.0)
        if r == rows - 1:
            ax.set_xlabel("layer")

        # Row label: the variant's name (bold) and its verdict, rotated, left of the row.
        cell = grid[r, 0].get_position(fig)
        center = (cell.y0 + cell.y1) / 2
        lines = [_fit(line, plan.panel_h, ROW_LABEL_PT, "bold") for line in names[r][:2]]
        x = EDGE + _height(name_lines, ROW_LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            "\n".join(lines),
            rotation=90,
            ha="center",
            va="center",
            fontsize=ROW_LABEL_PT,
            fontweight="bold",
            linespacing=LINE_SPACING,
            rotation_mode="anchor",
        )
        x = EDGE + _height(name_lines, ROW_LABEL_PT) + _height(1, LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            _fit(verdicts[r], plan.panel_h, LABEL_PT),
            rotation=90,
            ha="center",
            va="center",
            fontsize=LABEL_PT,
            rotation_mode="anchor",
        )

    _add_title(fig, plan)
    return fig


# --- encoding ------------------------------------------------------------------------------


def _encode(fig: Figure, options: FigureOptions) -> bytes:
    buffer = BytesIO()  # the canvas saves under _style(): svg.hashsalt, unhinted text
    if options.format == "svg":
        fig.savefig(buffer, format="svg", dpi=fig.dpi, metadata={"Date": None})
    else:
        fig.savefig(
            buffer,
            format="png",
            dpi=fig.dpi,
            metadata={"Software": None},
            pil_kwargs={"compress_level": 1},  # level 6 is 40% slower for 2% fewer bytes
        )
    return buffer.getvalue()


def render_analysis(result: Analysis, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_analysis_figure`; top-level, so a process pool runs it."""
    return _encode(build_analysis_figure(result, options), options)


def render_comparison(comparison: Comparison, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_comparison_figure`; top-level and picklable."""
    return _encode(build_comparison_figure(comparison, options), options)
