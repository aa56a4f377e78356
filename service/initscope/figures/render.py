"""Figures of a result: matplotlib's object API on the Agg canvas (never pyplot), PNG or SVG.

Everything drawn comes from the frozen result -- histogram counts and edges, per-layer
statistics -- and nothing is recomputed from activations. The same result and options give
the same bytes: no dates or software versions in the metadata, a fixed SVG hash salt, fonts
named explicitly (DejaVu Sans ships with matplotlib).

No layout engine runs: text sizes are measured with the font (``text_to_path``, no drawing)
and the panel boxes are computed from them, in points, so nothing overlaps at any figure size
the panels fit in.

Speed: a figure has no ``Axes``. Building an Axes and its tick machinery costs more than
drawing everything else, so each panel is a :class:`Panel` -- one artist on the figure that
maps its data limits onto its box with a plain transform and draws the frame and the tick
marks as one path, the tick labels as texts placed by us. On the Agg canvas, text is filled
as the glyphs' outlines (cached per string and font, one path per line) instead of rendered
glyph by glyph, and text is measured once per process.
"""

from __future__ import annotations

import functools
import math
import textwrap
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from typing import TYPE_CHECKING, Any, Literal, get_args

import matplotlib as mpl
import numpy as np
from matplotlib.artist import Artist
from matplotlib.backend_bases import GraphicsContextBase, RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.colors import (
    BoundaryNorm,
    Colormap,
    ListedColormap,
    LogNorm,
    Normalize,
    TwoSlopeNorm,
)
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, PathPatch, StepPatch
from matplotlib.path import Path
from matplotlib.scale import LogTransform
from matplotlib.text import Text
from matplotlib.textpath import text_to_path
from matplotlib.transforms import (
    Affine2D,
    Bbox,
    BboxTransform,
    IdentityTransform,
    Transform,
    TransformedBbox,
    blended_transform_factory,
)

from initscope.engine.sweep import SweepJob, SweepResult
from initscope.jobs import FigureOptions
from initscope.labels import layer_extras
from initscope.results import Analysis, Comparison, FindingCode, Histogram, LayerResult

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

_RC: dict[RcKeyType, Any] = {
    "font.family": [FONT],
    "font.size": LABEL_PT,
    "svg.hashsalt": "initscope",
    "svg.fonttype": "path",
    "path.simplify": True,
    # Unhinted glyphs: the shapes are the outlines' own, in the measurements as in the drawing.
    "text.hinting": "none",
}


@contextmanager
def _style() -> Iterator[None]:
    """The rc parameters every figure is built and saved under (read when artists are made)."""
    with mpl.rc_context(_RC):
        yield


# --- the canvas ----------------------------------------------------------------------------

_CACHE_SIZE = 4096


def _font_rc() -> tuple[Any, ...]:
    """The rc parameters a font's glyphs and advances depend on (part of the caches' keys)."""
    rc = mpl.rcParams
    return rc["text.hinting"], rc["text.hinting_factor"], rc["text.kerning_factor"]


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _outline(text: str, prop: FontProperties, rc: tuple[Any, ...]) -> Path | None:
    """The glyph outlines of one line of ``text``, laid out as matplotlib lays it out, in
    units of ``text_to_path.FONT_SCALE`` points per em, baseline at y = 0 (None: no ink);
    ``rc`` (:func:`_font_rc`) is the rc parameters they are made under."""
    vertices, codes = text_to_path.get_text_path(prop, text)
    if not len(codes):
        return None
    return Path(np.asarray(vertices, dtype=np.float64).reshape(-1, 2), codes)


_Metrics = tuple[float, float, float]
# A cache, cleared when full: (text, font, dpi, _font_rc()) -> Agg's measurements.
_metrics: dict[tuple[str, FontProperties, float, tuple[Any, ...]], _Metrics] = {}


class _Renderer(RendererAgg):
    """Agg, filling a line of plain text as one path of its glyphs' outlines.

    matplotlib >= 3.11 renders text glyph by glyph (laying the line out again, loading and
    rasterising each glyph, blending its bitmap): that was a quarter of a figure's time.
    The outlines come from the same unhinted font, laid out by the same shaper, and are
    filled by the same antialiased rasteriser as every other path, so the text looks the
    same; they are cached per string and font, and so are the text's measurements.
    """

    def draw_text(
        self,
        gc: GraphicsContextBase,
        x: float,
        y: float,
        s: str,
        prop: FontProperties,
        angle: float,
        ismath: bool | Literal["TeX"] = False,
        mtext: Text | None = None,
    ) -> None:
        features = getattr(mtext, "get_fontfeatures", lambda: None)()
        language = getattr(mtext, "get_language", lambda: None)()
        if ismath or features or language:
            super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)  # type: ignore[no-untyped-call]
            return
        path = _outline(s, prop.copy(), _font_rc())
        if path is None:
            return
        scale = prop.get_size_in_points() / text_to_path.FONT_SCALE * self.dpi / 72
        # Text.draw gives the baseline's start with y downwards; paths have y upwards.
        place = Affine2D().scale(scale).rotate_deg(angle).translate(x, self.height - y)
        gc.set_linewidth(0)
        gc.set_snap(False)  # glyphs of straight strokes ("1", a minus) keep their place
        self.draw_path(gc, path, place, gc.get_rgb())  # type: ignore[no-untyped-call]

    def get_text_width_height_descent(
        self, s: str, prop: FontProperties, ismath: bool | Literal["TeX"]
    ) -> _Metrics:
        if ismath:
            found: _Metrics = super().get_text_width_height_descent(s, prop, ismath)  # type: ignore[no-untyped-call]
            return found
        key = (s, prop.copy(), float(self.dpi), _font_rc())
        cached = _metrics.get(key)
        if cached is None:
            if len(_metrics) >= _CACHE_SIZE:
                _metrics.clear()
            cached = _metrics[key] = super().get_text_width_height_descent(s, prop, ismath)  # type: ignore[no-untyped-call]
        return cached


class _Canvas(FigureCanvasAgg):
    """The Agg canvas with :class:`_Renderer`, drawing and saving under this module's rc
    parameters whoever asks: the layout's text measurements assume them (unhinted glyphs)."""

    def get_renderer(self) -> RendererAgg:
        width, height = self.get_width_height(physical=True)
        key = (width, height, self.figure.dpi)
        if self._lastKey != key:
            self.renderer = _Renderer(width, height, self.figure.dpi)  # type: ignore[no-untyped-call]
            self._lastKey = key
        renderer: RendererAgg = self.renderer
        return renderer

    def draw(self) -> None:
        with _style():
            super().draw()  # type: ignore[no-untyped-call]  # backend_agg has no stubs

    def print_figure(self, *args: Any, **kwargs: Any) -> Any:
        with _style():
            return super().print_figure(*args, **kwargs)


# --- text measurement and formatting -------------------------------------------------------


@functools.lru_cache(maxsize=64)
def _font(size: float, weight: str = "normal") -> FontProperties:
    """Shared: a Text copies the properties it is given, and nothing else changes them."""
    return FontProperties(family=FONT, size=size, weight=weight)


def _width(text: str, size: float, weight: str = "normal") -> float:
    """Width in points of ``text`` (its widest line) set in ``size``-point DejaVu Sans: the sum
    of its characters' advances (kerning, which only tightens, ignored)."""
    return max(sum(_advance(char, size, weight) for char in line) for line in text.split("\n"))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _advance(char: str, size: float, weight: str) -> float:
    """One character's advance in points. Memoised: loading a glyph is what measuring costs
    (~10 us a character), and the figures use few distinct characters."""
    prop = _font(size, weight)
    return float(text_to_path.get_text_width_height_descent(char, prop, ismath=False)[0])


@functools.lru_cache(maxsize=64)
def _line_box(size: float) -> float:
    """Height in points of the box matplotlib gives a single line of plain text (that of
    "lp": ascender to descender)."""
    return float(text_to_path.get_text_width_height_descent("lp", _font(size), ismath=False)[1])


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


@functools.lru_cache(maxsize=_CACHE_SIZE)
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


_HAlign = Literal["left", "center", "right"]
_VAlign = Literal["bottom", "baseline", "center", "center_baseline", "top"]


def _text(
    place: Transform,
    x: float,
    y: float,
    text: str,
    size: float,
    *,
    ha: _HAlign = "center",
    va: _VAlign = "baseline",
    color: str = "black",
    weight: str = "normal",
    rotation: float = 0.0,
    lines: bool = False,
) -> Text:
    """A plain (never mathtext: it is measured as plain text) text at ``(x, y)`` in ``place``
    coordinates; rotated text turns about that point. ``lines``: a text that may have more
    than one line, spaced as the layout measures them (single lines keep matplotlib's box)."""
    return Text(
        x,
        y,
        text,
        color=color,
        horizontalalignment=ha,
        verticalalignment=va,
        fontproperties=_font(size, weight),
        rotation=rotation,
        rotation_mode="anchor" if rotation else "default",
        linespacing=LINE_SPACING if lines else None,
        parse_math=False,
        transform=place,
    )


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


def _decades(low: float, high: float) -> list[int]:
    """The (at most 5) whole decades labelled on a log axis over ``[10**low, 10**high]``."""
    step = max(1, math.ceil((high - low) / 4))
    return [e for e in range(int(low), int(high) + 1) if e % step == 0]  # 1 when in range


def _positive(values: Sequence[float | None]) -> list[float]:
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
        found = _text(
            self._place, box.x0 + x * box.width, box.y0 + y * box.height, text, size, **kwargs
        )
        self._own(found)
        self.texts.append(found)
        return found

    def _outside(self, x: float, y: float, text: str, size: float, **kwargs: Any) -> Text:
        found = _text(self._place, x, y, text, size, **kwargs)
        self._own(found)
        return found

    def x_ticks(
        self, values: Sequence[float], labels: Sequence[str], aligns: Sequence[_HAlign]
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
        y = box.y0 - TICK_LENGTH - TICK_PAD - _line_box(TICK_PT) - LABEL_PAD
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
    left = [f"◂ {_count(histogram.underflow)} below"] if histogram.underflow else []
    right = [f"{_count(histogram.overflow)} above ▸"] if histogram.overflow else []
    if histogram.non_finite:
        right.append(f"{_count(histogram.non_finite)} NaN/inf")
    return left, right


def _flow_lines(histograms: Sequence[Histogram]) -> int:
    return max((max(map(len, _flow_notes(h))) for h in histograms), default=0)


@dataclass(frozen=True)
class _Fractions:
    """The y scale all histogram panels of a figure share: [0, top], labelled at ``ticks``."""

    top: float
    ticks: tuple[float, ...]
    labels: tuple[str, ...]
    width: float  # of the widest label (pt)


def _fraction_scale(histograms: Sequence[Histogram], panel_h_pt: float) -> _Fractions:
    """The shared y range of the histogram panels, with headroom for the out-of-range notes."""
    peak = max((float(_fractions(h).max(initial=0.0)) for h in histograms), default=0.0)
    peak = peak if peak > 0 else 1.0
    notes = _flow_lines(histograms)
    room = (_height(notes, NOTE_PT) + 4) / panel_h_pt if notes else 0.0
    ticks = _fraction_ticks(peak)
    labels = tuple(_number(t) for t in ticks)
    width = max(_width(label, TICK_PT) for label in labels)
    return _Fractions(peak * 1.04 / max(1 - room, 0.3), tuple(ticks), labels, width)


def _histogram_panel(
    fig: Figure,
    place: Transform,
    box: Bbox,
    histogram: Histogram,
    scale: _Fractions,
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
    labels = [_number(low), _number(high)]
    if sum(_width(label, TICK_PT) for label in labels) + GAP > box.width:
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


def _fraction_axis(panel: Panel, scale: _Fractions) -> None:
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
        _height(text.count("\n") + 1, LABEL_PT) / 2 / max(height_pt, 1.0) for _, text, _ in placed
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


def _gradient_panel(
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
    panel.y_ticks([10.0**e for e in exponents], [_decade(e) for e in exponents], right=True)
    if labels:
        _line_labels(panel, depth, ends, limits)
    return panel


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

    def box(self, row: int, col: int) -> Bbox:
        """The panel at ``row`` (from the top), ``col``: points from the lower left."""
        x0 = self.left + col * (self.panel_w + _WGAP)
        y1 = self.height_pt - self.frame.top - row * (self.panel_h + self.hgap)
        return Bbox.from_bounds(x0, y1 - self.panel_h, self.panel_w, self.panel_h)


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


def _figure(plan: _Plan) -> tuple[Figure, Transform]:
    """The figure of ``plan`` on an Agg canvas, and the transform from the plan's points
    (from the lower left) to its pixels: a whole number of pixels stretches the plan's
    points by well under a pixel, so that its edges are the figure's."""
    width_pt, height_pt = plan.width_pt, plan.height_pt
    figure = Figure(
        figsize=(_inches(width_pt, plan.dpi), _inches(height_pt, plan.dpi)), dpi=plan.dpi
    )
    _Canvas(figure)
    return figure, Affine2D().scale(1 / width_pt, 1 / height_pt) + figure.transFigure


def _inches(points: float, dpi: float) -> float:
    """``points / 72``, nudged so that Agg's ``int(inches * dpi)`` gives the rounded pixels."""
    pixels = max(round(points / 72 * dpi), 1)
    inches = pixels / dpi
    while int(inches * dpi) < pixels:
        inches = math.nextafter(inches, math.inf)
    return inches


def _network_extras(layers: Sequence[LayerResult]) -> str:
    """The layers' common :func:`~initscope.labels.layer_extras`, or ``mixed BN/dropout``
    when they differ."""
    extras = {layer_extras(layer) for layer in layers}
    return extras.pop() if len(extras) == 1 else "mixed BN/dropout"


def _summary(layers: Sequence[LayerResult]) -> str:
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
    extras = _network_extras(layers)
    return f"{shape} {activation}, {init}" + (f", {extras}" if extras else "")


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
        fontproperties=_font(TITLE_PT),
        linespacing=LINE_SPACING,
        parse_math=False,
    )


# --- figures -------------------------------------------------------------------------------


def build_analysis_figure(result: Analysis, options: FigureOptions) -> Figure:
    """One histogram panel per layer ("1-layer", ...) and a final "gradient" panel.

    Histograms are the stored counts as fractions of each layer's values (out-of-range and
    non-finite ones included in the total, and noted in the panel's corners), on a y scale
    shared by all layers. The gradient panel shows RMS(dL/dh_l) / RMS(dL/dh_L) and
    E[phi'(a_l)^2] per layer on one log axis. Title: the verdict and the network; footer: the
    recommendation's reason. The panels are :class:`Panel` artists, in reading order.
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
    fig, place = _figure(plan)
    scale = _fraction_scale(histograms, plan.panel_h)

    for i, histogram in enumerate(histograms):
        cell = divmod(i, cols)
        panel = _histogram_panel(fig, place, plan.box(*cell), histogram, scale, cell)
        extras = layer_extras(layers[i])
        title = f"{i + 1}-layer" + (f" · {extras}" if extras else "")
        panel.set_title(_fit(title, plan.panel_w, PANEL_TITLE_PT))
        if cell[1] == 0:  # the scale and axis labels on the first column only: all are alike
            _fraction_axis(panel, scale)
        fig.add_artist(panel)
    cell = divmod(len(layers), cols)
    panel = _gradient_panel(
        fig, place, plan.box(*cell), layers, gain=True, limits=limits, labels=True, cell=cell
    )
    panel.set_title("gradient")
    panel.set_xlabel("layer")
    fig.add_artist(panel)

    _add_title(fig, plan)
    if plan.frame.footer:
        fig.text(
            EDGE / plan.width_pt,
            EDGE / plan.height_pt,
            "\n".join(plan.frame.footer),
            ha="left",
            va="bottom",
            fontproperties=_font(FOOTER_PT),
            linespacing=LINE_SPACING,
            parse_math=False,
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
    decades = _decade_label_width(limits)
    verdicts = [
        f"verdict: {a.diagnosis.verdict}"
        + (f" · {extras}" if (extras := _network_extras(a.simulation.layers)) else "")
        for a in analyses
    ]

    def frame_at(width_pt: float) -> _Frame:
        title = _title_lines(["initscope comparison"], width_pt - 2 * EDGE)
        top = EDGE + _height(len(title), TITLE_PT) + GAP + _PANEL_TITLE
        return _Frame(top, EDGE + _XTICKS + _XLABEL, title)

    def planned(name_lines: int) -> _Plan:
        row_label = _height(name_lines, ROW_LABEL_PT) + _height(1, LABEL_PT) + GAP
        left = EDGE + row_label + _XLABEL + _frac_tick_width(histograms) + _YTICK_ROOM
        right = EDGE + _XLABEL + decades + _YTICK_ROOM
        return _plan(rows, cols, options, (left, right, _XTICKS + _XLABEL + GAP), frame_at)

    # Row labels run along the row's height: names that do not fit there take two lines.
    plan = planned(1)
    names = [_wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    name_lines = min(max(map(len, names)), 2)
    if name_lines > 1:
        plan = planned(name_lines)
        names = [_wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    fig, place = _figure(plan)
    scale = _fraction_scale(histograms, plan.panel_h)

    for r, analysis in enumerate(analyses):
        layers = analysis.simulation.layers
        for c, layer in enumerate(layers):  # columns past a shallower variant's depth stay blank
            panel = _histogram_panel(
                fig, place, plan.box(r, c), layer.activations.histogram, scale, (r, c)
            )
            if r == 0:
                panel.set_title(f"{c + 1}-layer")
            if c == 0:
                panel.y_ticks(scale.ticks, scale.labels)
                panel.set_ylabel("fraction of values", scale.width)
            # The x label goes under the lowest panel of each column only.
            if all(d <= c for d in depths[r + 1 :]):
                panel.set_xlabel("activation")
            fig.add_artist(panel)
        panel = _gradient_panel(
            fig,
            place,
            plan.box(r, depth),
            layers,
            gain=False,
            limits=limits,
            labels=False,
            cell=(r, depth),
        )
        panel.set_ylabel(GRADIENT_LABEL, decades, right=True)
        if r == 0:
            panel.set_title("gradient")
        if r == rows - 1:
            panel.set_xlabel("layer")
        fig.add_artist(panel)

        # Row label: the variant's name (bold) and its verdict, rotated, left of the row.
        box = plan.box(r, 0)
        center = (box.y0 + box.y1) / 2 / plan.height_pt
        lines = [_fit(line, plan.panel_h, ROW_LABEL_PT, "bold") for line in names[r][:2]]
        x = EDGE + _height(name_lines, ROW_LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            "\n".join(lines),
            rotation=90,
            ha="center",
            va="center",
            fontproperties=_font(ROW_LABEL_PT, "bold"),
            linespacing=LINE_SPACING,
            rotation_mode="anchor",
            parse_math=False,
        )
        x = EDGE + _height(name_lines, ROW_LABEL_PT) + _height(1, LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            _fit(verdicts[r], plan.panel_h, LABEL_PT),
            rotation=90,
            ha="center",
            va="center",
            fontproperties=_font(LABEL_PT),
            rotation_mode="anchor",
            parse_math=False,
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


# --- sweeps -----------------------------------------------------------------------------------

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
    with _style():
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
    _Canvas(fig)
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
    with _style():
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
    return _encode(build_sweep_figure(result, options), options)
