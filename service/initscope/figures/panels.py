"""The pieces the analysis and comparison figures are drawn from: panels, their grid, titles.

Those two figures make no ``Axes``: building an Axes and its tick machinery costs more than
drawing everything else, so each panel is a :class:`Panel` -- one artist on the figure that
maps its data limits onto its box with a plain transform, draws the frame and the tick marks
as one path, and places its tick labels as texts itself. (The sweep, training and search
figures do use Axes; see their modules.)

No layout engine runs either: text sizes are measured with the font (``text_to_path``, no
drawing; :mod:`initscope.figures.canvas`) and the panel boxes are computed from them, in
points (:func:`plan_figure`), so nothing overlaps at any figure size the panels fit in.

Everything drawn comes from the frozen result -- histogram counts and edges, per-layer
statistics -- and nothing is recomputed from activations.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from matplotlib.artist import Artist
from matplotlib.backend_bases import RendererBase
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch, StepPatch
from matplotlib.path import Path
from matplotlib.scale import LogTransform
from matplotlib.text import Text
from matplotlib.transforms import (
    Affine2D,
    Bbox,
    BboxTransform,
    IdentityTransform,
    Transform,
    TransformedBbox,
    blended_transform_factory,
)

from initscope.figures.canvas import (
    LABEL_PT,
    LINE_SPACING,
    NOTE_PT,
    PANEL_TITLE_PT,
    TICK_PT,
    TITLE_PT,
    Canvas,
    HAlign,
    font_properties,
    line_box,
    plain_text,
    text_height,
    text_width,
    wrap,
)
from initscope.jobs import FigureOptions
from initscope.labels import layer_extras
from initscope.results import Histogram, LayerResult

MAX_COLUMNS = 6
COLUMN_IN = 2.2  # inches per panel column (panel + gap) when the size is derived
ROW_IN = 2.0  # inches per panel row

# Panel furniture (pt).
FRAME_WIDTH = 0.6  # the frame and the tick marks
TICK_LENGTH = 2.5  # tick marks point out of the panel
TICK_PAD = 2.0
LABEL_PAD = 2.0
TITLE_PAD = 4.0
EDGE = 6.0  # space between the figure edge and any text
GAP = 6.0  # clear space between unrelated texts

HIST_COLOR = "#0072b2"
GRADIENT_COLOR = "#d55e00"
GAIN_COLOR = "#009e73"
NOTE_COLOR = "#8a1c1c"
LINE_WIDTH = 1.2
MARKER_SIZE = 3.5


# --- tick labels ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)
def number_label(value: float) -> str:
    """Compact tick label: 3 significant digits, exponent without padding, a real minus."""
    if value == 0:
        return "0"
    text = f"{value:.2g}" if abs(value) >= 1e4 or abs(value) < 1e-3 else f"{value:.3g}"
    if "e" in text:
        mantissa, exponent = text.split("e")
        text = f"{mantissa}e{int(exponent)}"
    return text.replace("-", "\N{MINUS SIGN}")


def count_label(n: int) -> str:
    """A count, compact: 1234, 12.3k, 1.23M."""
    if n < 10_000:
        return str(n)
    if n < 1_000_000:
        return f"{n / 1e3:.3g}k"
    return f"{n / 1e6:.3g}M"


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(exponent: int) -> str:
    """The tick label of ``10**exponent``: 1, 10¹, 10⁻²."""
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
    room = text_width(str(depth), TICK_PT) + 4
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


def log_limits(values: Sequence[float]) -> tuple[float, float]:
    """Decade-aligned (log10) limits around the positive ``values``, with a little air."""
    if not values:
        return -1.0, 1.0
    low = math.floor(math.log10(min(values)) - 0.15)
    high = math.ceil(math.log10(max(values)) + 0.15)
    # 10**-300 .. 10**300 stay normal floats; a (subnormal) value beyond is off the axis.
    return float(max(low, -300)), float(min(max(high, -299), 300))


def _decades(low: float, high: float) -> list[int]:
    """The (at most 5) whole decades labelled on a log axis over ``[10**low, 10**high]``."""
    step = max(1, math.ceil((high - low) / 4))
    return [e for e in range(int(low), int(high) + 1) if e % step == 0]  # 1 when in range


def _positive(values: Sequence[float | None]) -> list[float]:
    """The values that a log axis can show."""
    return [v for v in values if v is not None and v > 0]


# --- panels --------------------------------------------------------------------------------


class Panel(Artist):
    """One panel of a figure, drawn without an Axes: a frame around ``box`` (in the points
    ``place`` maps onto the figure), the data mapped onto it from ``xlim`` x ``ylim`` (a log
    y axis when ``log_y``), outward tick marks, and texts placed in points around it.

    ``kind`` is "histogram" or "gradient"; ``cell`` its (row, column) in the figure's grid.
    ``patches`` and ``lines`` hold the data as stored (fractions over edges, ratios per layer):
    ``data_transform`` does the scaling. ``texts`` are the notes and labels inside the panel;
    ``tick_labels``, ``labels`` (axis labels) and ``title`` are outside it.
    """

    def __init__(
        self,
        fig: Figure,
        place: Transform,
        box: Bbox,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        *,
        kind: Literal["histogram", "gradient"],
        cell: tuple[int, int],
        log_y: bool = False,
    ) -> None:
        super().__init__()
        self.set_figure(fig)  # for the parts made before the figure adds the panel
        self.kind = kind
        self.cell = cell
        self.box: Bbox = box
        self.bbox = TransformedBbox(box, place)
        self._place = place
        self._xlim = xlim
        self._ylim = ylim
        self._log_y = log_y
        y0, y1 = (math.log10(ylim[0]), math.log10(ylim[1])) if log_y else ylim
        to_box = BboxTransform(Bbox([[xlim[0], y0], [xlim[1], y1]]), self.bbox)
        self.data_transform: Transform = to_box
        if log_y:
            log = blended_transform_factory(IdentityTransform(), LogTransform(10))
            self.data_transform = log + to_box
        self.patches: list[Patch] = []
        self.lines: list[Line2D] = []
        self.texts: list[Text] = []
        self.tick_labels: list[Text] = []
        self.labels: list[Text] = []
        self.title: Text | None = None
        self._marks: list[tuple[float, float, float, float]] = []  # tick segments (pt)

    # Read like an Axes.
    def get_xlim(self) -> tuple[float, float]:
        return self._xlim

    def get_ylim(self) -> tuple[float, float]:
        return self._ylim

    def get_yscale(self) -> str:
        return "log" if self._log_y else "linear"

    def get_title(self) -> str:
        return self.title.get_text() if self.title is not None else ""

    def get_window_extent(self, renderer: RendererBase | None = None) -> Bbox:
        return self.bbox.frozen()

    def get_children(self) -> list[Artist]:
        return [*self.patches, *self.lines, *self._all_texts()]

    def _all_texts(self) -> list[Text]:
        title = [self.title] if self.title is not None else []
        return [*self.texts, *self.tick_labels, *self.labels, *title]

    # Points of data values.
    def x_at(self, value: float) -> float:
        low, high = self._xlim
        return float(self.box.x0 + (value - low) / (high - low) * self.box.width)

    def y_at(self, value: float) -> float:
        low, high = self._ylim
        if self._log_y:
            value, low, high = math.log10(value), math.log10(low), math.log10(high)
        return float(self.box.y0 + (value - low) / (high - low) * self.box.height)

    # Building.
    def _own(self, artist: Artist) -> None:
        figure = self.get_figure()
        assert figure is not None
        artist.set_figure(figure)

    def add_data(self, artist: Patch | Line2D) -> None:
        """Add a data artist, in data coordinates, clipped to the panel."""
        artist.set_transform(self.data_transform)
        artist.set_clip_box(self.bbox)
        self._own(artist)
        if isinstance(artist, Patch):
            self.patches.append(artist)
        else:
            self.lines.append(artist)

    def text(self, x: float, y: float, text: str, size: float, **kwargs: Any) -> Text:
        """A text inside the panel, at axes fractions ``x``, ``y``."""
        box = self.box
        found = plain_text(
            self._place, box.x0 + x * box.width, box.y0 + y * box.height, text, size, **kwargs
        )
        self._own(found)
        self.texts.append(found)
        return found

    def _outside(self, x: float, y: float, text: str, size: float, **kwargs: Any) -> Text:
        found = plain_text(self._place, x, y, text, size, **kwargs)
        self._own(found)
        return found

    def x_ticks(
        self, values: Sequence[float], labels: Sequence[str], aligns: Sequence[HAlign]
    ) -> None:
        """Tick marks under the panel at ``values``, each labelled (unless "") below it."""
        y = self.box.y0
        for value, label, align in zip(values, labels, aligns, strict=True):
            x = self.x_at(value)
            self._marks.append((x, y, x, y - TICK_LENGTH))
            if label:
                self.tick_labels.append(
                    self._outside(x, y - TICK_LENGTH - TICK_PAD, label, TICK_PT, ha=align, va="top")
                )

    def y_ticks(
        self, values: Sequence[float], labels: Sequence[str], *, right: bool = False
    ) -> None:
        """Tick marks and labels left (or right) of the panel at ``values``."""
        x, out = (self.box.x1, 1.0) if right else (self.box.x0, -1.0)
        for value, label in zip(values, labels, strict=True):
            y = self.y_at(value)
            self._marks.append((x, y, x + out * TICK_LENGTH, y))
            self.tick_labels.append(
                self._outside(
                    x + out * (TICK_LENGTH + TICK_PAD),
                    y,
                    label,
                    TICK_PT,
                    ha="left" if right else "right",
                    va="center_baseline",
                )
            )

    def set_title(self, title: str) -> None:
        box = self.box
        self.title = self._outside((box.x0 + box.x1) / 2, box.y1 + TITLE_PAD, title, PANEL_TITLE_PT)

    def set_xlabel(self, label: str) -> None:
        """Under the tick labels, as an Axes puts it (the layout reserves a line for them)."""
        box = self.box
        y = box.y0 - TICK_LENGTH - TICK_PAD - line_box(TICK_PT) - LABEL_PAD
        self.labels.append(self._outside((box.x0 + box.x1) / 2, y, label, LABEL_PT, va="top"))

    def set_ylabel(self, label: str, ticks_pt: float, *, right: bool = False) -> None:
        """Along the panel, beyond tick labels ``ticks_pt`` points wide."""
        box = self.box
        away = TICK_LENGTH + TICK_PAD + ticks_pt + LABEL_PAD
        x, va = (box.x1 + away, "top") if right else (box.x0 - away, "bottom")
        center = (box.y0 + box.y1) / 2
        self.labels.append(self._outside(x, center, label, LABEL_PT, va=va, rotation=90))

    # Drawing.
    def _frame(self) -> PathPatch:
        """The frame and the tick marks: one path."""
        box = self.box
        corners = [(box.x0, box.y0), (box.x1, box.y0), (box.x1, box.y1), (box.x0, box.y1)]
        vertices = [*corners, corners[0]]
        codes = [Path.MOVETO, Path.LINETO, Path.LINETO, Path.LINETO, Path.CLOSEPOLY]
        for x0, y0, x1, y1 in self._marks:
            vertices += [(x0, y0), (x1, y1)]
            codes += [Path.MOVETO, Path.LINETO]
        frame = PathPatch(
            Path(vertices, codes),
            fill=False,
            edgecolor="black",
            linewidth=FRAME_WIDTH,
            capstyle="butt",
            joinstyle="miter",
            transform=self._place,
            snap=True,
        )
        self._own(frame)
        return frame

    def draw(self, renderer: RendererBase) -> None:
        if not self.get_visible():
            return
        renderer.open_group("panel", self.get_gid())
        for artist in [*self.patches, *self.lines]:
            artist.draw(renderer)
        self._frame().draw(renderer)
        for text in self._all_texts():
            text.draw(renderer)
        renderer.close_group("panel")
        self.stale = False


def _fractions(histogram: Histogram) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Counts per bin as a fraction of all of the layer's values (out-of-range ones included)."""
    counts = np.asarray(histogram.counts, dtype=np.float64)
    total = histogram.total
    return counts / total if total else counts


def _flow_notes(histogram: Histogram) -> tuple[list[str], list[str]]:
    """Texts for the values the bins do not show: (top-left lines, top-right lines)."""
    left = [f"◂ {count_label(histogram.underflow)} below"] if histogram.underflow else []
    right = [f"{count_label(histogram.overflow)} above ▸"] if histogram.overflow else []
    if histogram.non_finite:
        right.append(f"{count_label(histogram.non_finite)} NaN/inf")
    return left, right


def _flow_lines(histograms: Sequence[Histogram]) -> int:
    """The most lines of out-of-range notes in one corner of any of the panels."""
    return max((max(map(len, _flow_notes(h))) for h in histograms), default=0)


@dataclass(frozen=True)
class FractionScale:
    """The y scale all histogram panels of a figure share: [0, top], labelled at ``ticks``."""

    top: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    width: float  # of the widest label (pt)


def fraction_scale(histograms: Sequence[Histogram], panel_h_pt: float) -> FractionScale:
    """The shared y range of the histogram panels, with headroom for the out-of-range notes."""
    peak = max((float(_fractions(h).max(initial=0.0)) for h in histograms), default=0.0)
    peak = peak if peak > 0 else 1.0
    notes = _flow_lines(histograms)
    room = (text_height(notes, NOTE_PT) + 4) / panel_h_pt if notes else 0.0
    ticks = _fraction_ticks(peak)
    labels = tuple(number_label(t) for t in ticks)
    width = max(text_width(label, TICK_PT) for label in labels)
    return FractionScale(peak * 1.04 / max(1 - room, 0.3), tuple(ticks), labels, width)


def histogram_panel(
    fig: Figure,
    place: Transform,
    box: Bbox,
    histogram: Histogram,
    scale: FractionScale,
    cell: tuple[int, int],
) -> Panel:
    """One ``StepPatch`` of fractions over the stored edges, labelled at the range's ends."""
    edges = np.asarray(histogram.edges, dtype=np.float64)
    low, high = float(edges[0]), float(edges[-1])
    panel = Panel(fig, place, box, (low, high), (0.0, scale.top), kind="histogram", cell=cell)
    panel.add_data(
        StepPatch(
            _fractions(histogram), edges, baseline=0, fill=True, facecolor=HIST_COLOR, linewidth=0
        )
    )
    labels = [number_label(low), number_label(high)]
    if sum(text_width(label, TICK_PT) for label in labels) + GAP > box.width:
        labels[1] = ""  # too narrow for both: the low end and the axis' length tell the range
    # The end labels stay inside the panel, so neighbouring panels need no gap for them.
    panel.x_ticks([low, high], labels, ["left", "right"])
    left, right = _flow_notes(histogram)
    for lines, x, align in ((left, 0.03, "left"), (right, 0.97, "right")):
        if lines:
            panel.text(
                x, 0.97, "\n".join(lines), NOTE_PT, ha=align, va="top", color=NOTE_COLOR, lines=True
            )
    return panel


def fraction_axis(panel: Panel, scale: FractionScale) -> None:
    """The shared scale's ticks and label, left of the row's first panel."""
    panel.y_ticks(scale.ticks, scale.labels)
    panel.set_xlabel("activation")
    panel.set_ylabel("fraction of values", scale.width)


def _line_labels(
    panel: Panel,
    depth: int,
    items: Sequence[tuple[str, str, float]],
    limits: tuple[float, float],
) -> None:
    """Label each line (text, colour, last value) right of the last layer, at the height of
    its last point; labels that would touch are pushed apart, and kept inside the panel."""
    if not items:
        return
    low, high = limits
    height_pt = panel.box.height
    placed = sorted(
        ((math.log10(value) - low) / (high - low), text, color) for text, color, value in items
    )
    # Half-heights of each label, as fractions of the panel height.
    halves = [
        text_height(text.count("\n") + 1, LABEL_PT) / 2 / max(height_pt, 1.0)
        for _, text, _ in placed
    ]
    positions = [max(p, halves[0]) if i == 0 else p for i, (p, _, _) in enumerate(placed)]
    for i in range(1, len(positions)):
        positions[i] = max(positions[i], positions[i - 1] + halves[i - 1] + halves[i])
    overshoot = positions[-1] + halves[-1] - 1
    if overshoot > 0:
        positions = [p - overshoot for p in positions]
    x = (panel.x_at(depth) + 5 - panel.box.x0) / panel.box.width  # 5 pt right of the last layer
    for position, (_, text, color) in zip(positions, placed, strict=True):
        panel.text(x, position, text, LABEL_PT, ha="left", va="center", color=color, lines=True)


GRADIENT_LABEL = "grad RMS ÷ last"
GAIN_LABEL = "E[φ\N{PRIME}(a)²]"
# Narrow panels: the labels on two lines rather than squeezing the data.
NARROW_LABELS = {GRADIENT_LABEL: "grad RMS\n÷ last", GAIN_LABEL: GAIN_LABEL}


def gradient_panel(
    fig: Figure,
    place: Transform,
    box: Bbox,
    layers: Sequence[LayerResult],
    *,
    gain: bool,
    limits: tuple[float, float],
    labels: bool,
    cell: tuple[int, int],
) -> Panel:
    """Output-gradient RMS relative to the last layer (and optionally E[phi'(a)^2]) per layer,
    on a log axis labelled at the right; points with no (or a non-positive) value are skipped."""
    depth = len(layers)
    series = [("gradient", GRADIENT_LABEL, GRADIENT_COLOR, "o")]
    if gain:
        series.append(("gain", GAIN_LABEL, GAIN_COLOR, "s"))
    low, high = limits
    lines: list[Line2D] = []
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
        lines.append(
            Line2D(xs, ys, color=color, marker=marker, markersize=MARKER_SIZE, linewidth=LINE_WIDTH)
        )
        ends.append((label, color, ys[-1]))
    # Room at the right for the labels: a fraction of the panel width in data units.
    room = 0.0
    if labels and ends:
        fraction = _label_room(ends, box.width)
        if fraction > 0.45:
            ends = [(NARROW_LABELS[text], color, value) for text, color, value in ends]
            fraction = _label_room(ends, box.width)
        fraction = min(fraction, 0.7)
        room = fraction * depth / (1 - fraction)
    xlim = (0.5, depth + 0.5 + room)
    ylim = (10.0**low, 10.0**high)
    panel = Panel(fig, place, box, xlim, ylim, kind="gradient", cell=cell, log_y=True)
    for line in lines:
        panel.add_data(line)
    if not ends:
        panel.text(0.5, 0.5, "no finite gradients", NOTE_PT, va="center", color=NOTE_COLOR)
    ticks = _layer_ticks(depth, box.width * depth / (depth + room))
    panel.x_ticks(ticks, [str(t) for t in ticks], ["center"] * len(ticks))
    exponents = _decades(low, high)
    panel.y_ticks([10.0**e for e in exponents], [decade_label(e) for e in exponents], right=True)
    if labels:
        _line_labels(panel, depth, ends, limits)
    return panel


def _label_room(items: Sequence[tuple[str, str, float]], panel_w_pt: float) -> float:
    """The fraction of the panel width the line labels need right of the last layer."""
    return (5 + max(text_width(text, LABEL_PT) for text, _, _ in items) + 3) / max(panel_w_pt, 1.0)


def gradient_values(layers: Sequence[LayerResult], *, gain: bool) -> list[float]:
    """The positive values :func:`gradient_panel` draws (to choose its limits with)."""
    values = _positive([layer.gradients.relative_to_last for layer in layers])
    if gain:
        values += _positive([layer.mean_derivative_sq for layer in layers])
    return values


def decade_label_width(limits: tuple[float, float]) -> float:
    """Width in points of the widest decade label within the log10 ``limits``."""
    low, high = limits
    return max(text_width(decade_label(e), TICK_PT) for e in range(int(low), int(high) + 1))


# --- the grid ------------------------------------------------------------------------------

MIN_PANEL_W = 40.0  # pt: below this, the renderer trades pixels per point for room instead
MIN_PANEL_H = 32.0
MAX_DERIVED_PX = 4000  # a derived size never exceeds this many pixels a side
MIN_DPI = 10.0

# Vertical extent of an x axis's tick labels and of its label, below the panel (pt).
XTICKS_H = TICK_LENGTH + TICK_PAD + text_height(1, TICK_PT)
XLABEL_H = LABEL_PAD + text_height(1, LABEL_PT)
PANEL_TITLE_H = TITLE_PAD + text_height(1, PANEL_TITLE_PT)
YTICK_ROOM = TICK_LENGTH + TICK_PAD + 2
_WGAP = 8.0


@dataclass(frozen=True)
class Frame:
    """What surrounds the panel grid at a given figure width: margins in points, and the
    title and footer lines wrapped to that width."""

    top: float
    bottom: float
    title: tuple[str, ...]
    footer: tuple[str, ...] = ()


@dataclass(frozen=True)
class Plan:
    """A figure's size (points at ``dpi``) and where its ``rows x cols`` panels go."""

    rows: int
    cols: int
    left: float
    right: float
    hgap: float
    frame: Frame
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

    def box(self, row: int, col: int) -> Bbox:
        """The panel at ``row`` (from the top), ``col``: points from the lower left."""
        x0 = self.left + col * (self.panel_w + _WGAP)
        y1 = self.height_pt - self.frame.top - row * (self.panel_h + self.hgap)
        return Bbox.from_bounds(x0, y1 - self.panel_h, self.panel_w, self.panel_h)


def plan_figure(
    rows: int,
    cols: int,
    options: FigureOptions,
    sides: tuple[float, float, float],
    frame_at: Callable[[float], Frame],
) -> Plan:
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
        plan = Plan(rows, cols, left, right, hgap, frame, width_pt, height_pt, dpi)
        need_w = left + right + cols * MIN_PANEL_W + (cols - 1) * _WGAP
        need_h = frame.top + frame.bottom + rows * MIN_PANEL_H + (rows - 1) * hgap
        fits = min(width_pt / need_w, height_pt / need_h)
        if fits >= 1 or dpi <= MIN_DPI:
            break
        # The canvas's points grow as 1/dpi; the frame may rewrap, hence the loop.
        dpi = max(dpi * fits * 0.99, MIN_DPI)
    return plan


def new_figure(plan: Plan) -> tuple[Figure, Transform]:
    """The figure of ``plan`` on an Agg canvas, and the transform from the plan's points
    (from the lower left) to its pixels: a whole number of pixels stretches the plan's
    points by well under a pixel, so that its edges are the figure's."""
    width_pt, height_pt = plan.width_pt, plan.height_pt
    figure = Figure(
        figsize=(_inches(width_pt, plan.dpi), _inches(height_pt, plan.dpi)), dpi=plan.dpi
    )
    Canvas(figure)
    return figure, Affine2D().scale(1 / width_pt, 1 / height_pt) + figure.transFigure


def _inches(points: float, dpi: float) -> float:
    """``points / 72``, nudged so that Agg's ``int(inches * dpi)`` gives the rounded pixels."""
    pixels = max(round(points / 72 * dpi), 1)
    inches = pixels / dpi
    while int(inches * dpi) < pixels:
        inches = math.nextafter(inches, math.inf)
    return inches


# --- titles --------------------------------------------------------------------------------


def network_extras(layers: Sequence[LayerResult]) -> str:
    """The layers' common :func:`~initscope.labels.layer_extras`, or ``mixed BN/dropout``
    when they differ."""
    extras = {layer_extras(layer) for layer in layers}
    return extras.pop() if len(extras) == 1 else "mixed BN/dropout"


def summary(layers: Sequence[LayerResult]) -> str:
    """``5 x 100 sigmoid, normal(mean=0.0, std=1.0)`` from the layers' labels, with batch
    norm and dropout when present (``..., BN, dropout 0.5``)."""
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
    extras = network_extras(layers)
    return f"{shape} {activation}, {init}" + (f", {extras}" if extras else "")


def title_lines(parts: Sequence[str], width_pt: float) -> tuple[str, ...]:
    """The parts on one line joined by ' · ' when they fit, else one line each (wrapped)."""
    joined = "  ·  ".join(parts)
    if text_width(joined, TITLE_PT) <= width_pt:
        return (joined,)
    return tuple(line for part in parts for line in wrap(part, width_pt, TITLE_PT))


def panel_grid(panels: int) -> tuple[int, int]:
    """Rows and columns for ``panels``: at most MAX_COLUMNS a row, rows balanced."""
    rows = math.ceil(panels / MAX_COLUMNS)
    return rows, math.ceil(panels / rows)


def fraction_tick_width(histograms: Sequence[Histogram]) -> float:
    """Width in points of the widest tick label of the histograms' shared fraction scale."""
    peak = max((float(_fractions(h).max(initial=0.0)) for h in histograms), default=0.0)
    ticks = _fraction_ticks(peak if peak > 0 else 1.0)
    return max(text_width(number_label(t), TICK_PT) for t in ticks)


def add_title(fig: Figure, plan: Plan) -> None:
    """The plan's title lines, centred at the top of the figure."""
    fig.suptitle(
        "\n".join(plan.frame.title),
        x=0.5,
        y=1 - EDGE / plan.height_pt,
        ha="center",
        va="top",
        fontproperties=font_properties(TITLE_PT),
        linespacing=LINE_SPACING,
        parse_math=False,
    )
