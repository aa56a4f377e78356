"""What every figure is drawn on and saved by: the style, the Agg canvas, text, the encoder.

Every figure is a :class:`matplotlib.figure.Figure` on :class:`Canvas` (Agg, never pyplot),
built under :func:`style` and saved by :func:`encode` as PNG or SVG. The same figure gives
the same bytes: no dates or software versions in the metadata, a fixed SVG hash salt, fonts
named explicitly (DejaVu Sans ships with matplotlib).

On the canvas, a line of plain text is filled as its glyphs' outlines (cached per string and
font, one path per line) instead of rendered glyph by glyph, and text is measured once per
process. The measuring functions here (:func:`text_width`, :func:`wrap`, :func:`fit`) give
the sizes the panel layout of :mod:`initscope.figures.panels` is computed from.
"""

from __future__ import annotations

import functools
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from typing import TYPE_CHECKING, Any, Literal

import matplotlib as mpl
import numpy as np
from matplotlib.backend_bases import GraphicsContextBase
from matplotlib.backends.backend_agg import FigureCanvasAgg, RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.path import Path
from matplotlib.text import Text
from matplotlib.textpath import text_to_path
from matplotlib.transforms import Affine2D, Transform

from initscope.jobs import FigureOptions

if TYPE_CHECKING:
    from matplotlib.typing import RcKeyType  # not in every matplotlib >= 3.9 at runtime

FONT = "DejaVu Sans"

# Font sizes (pt).
TICK_PT = 6.5
LABEL_PT = 7.0
PANEL_TITLE_PT = 8.0
TITLE_PT = 10.0
FOOTER_PT = 7.5
NOTE_PT = 6.0
ROW_LABEL_PT = 8.5
LINE_SPACING = 1.25  # line height / font size, for every multi-line text we place

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
def style() -> Iterator[None]:
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


class Canvas(FigureCanvasAgg):
    """The Agg canvas with the outline-filling renderer, drawing and saving under
    :func:`style` whoever asks: the layout's text measurements assume it (unhinted glyphs)."""

    def get_renderer(self) -> RendererAgg:
        width, height = self.get_width_height(physical=True)
        key = (width, height, self.figure.dpi)
        if self._lastKey != key:
            self.renderer = _Renderer(width, height, self.figure.dpi)  # type: ignore[no-untyped-call]
            self._lastKey = key
        renderer: RendererAgg = self.renderer
        return renderer

    def draw(self) -> None:
        with style():
            super().draw()  # type: ignore[no-untyped-call]  # backend_agg has no stubs

    def print_figure(self, *args: Any, **kwargs: Any) -> Any:
        with style():
            return super().print_figure(*args, **kwargs)


def figure_size(options: FigureOptions, width_in: float, height_in: float) -> tuple[float, float]:
    """Inches of a figure whose natural size is ``width_in`` x ``height_in``: the options'
    pixels at their dpi, one side given keeping the natural aspect ratio."""
    if options.width and options.height:
        return options.width / options.dpi, options.height / options.dpi
    if options.width:
        return options.width / options.dpi, height_in * options.width / options.dpi / width_in
    if options.height:
        return width_in * options.height / options.dpi / height_in, options.height / options.dpi
    return width_in, height_in


# --- text measurement ----------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def font_properties(size: float, weight: str = "normal") -> FontProperties:
    """DejaVu Sans at ``size`` points. Shared: a Text copies the properties it is given, and
    nothing else changes them."""
    return FontProperties(family=FONT, size=size, weight=weight)


def text_width(text: str, size: float, weight: str = "normal") -> float:
    """Width in points of ``text`` (its widest line) set in ``size``-point DejaVu Sans: the sum
    of its characters' advances (kerning, which only tightens, ignored)."""
    return max(sum(_advance(char, size, weight) for char in line) for line in text.split("\n"))


@functools.lru_cache(maxsize=_CACHE_SIZE)
def _advance(char: str, size: float, weight: str) -> float:
    """One character's advance in points. Memoised: loading a glyph is what measuring costs
    (~10 us a character), and the figures use few distinct characters."""
    prop = font_properties(size, weight)
    return float(text_to_path.get_text_width_height_descent(char, prop, ismath=False)[0])


@functools.lru_cache(maxsize=64)
def line_box(size: float) -> float:
    """Height in points of the box matplotlib gives a single line of plain text (that of
    "lp": ascender to descender)."""
    return float(
        text_to_path.get_text_width_height_descent("lp", font_properties(size), ismath=False)[1]
    )


def text_height(lines: int, size: float) -> float:
    """Height in points of ``lines`` lines of ``size``-point text at :data:`LINE_SPACING`."""
    return lines * size * LINE_SPACING


def wrap(text: str, width_pt: float, size: float, weight: str = "normal") -> list[str]:
    """``textwrap`` to the widest character count whose every line fits ``width_pt``."""
    if not text:
        return []
    chars = max(8, int(width_pt / (text_width(text, size, weight) / len(text))))
    while True:
        lines = textwrap.wrap(text, chars, break_long_words=True)
        if chars <= 8 or all(text_width(line, size, weight) <= width_pt for line in lines):
            return lines
        chars -= 1


def fit(text: str, width_pt: float, size: float, weight: str = "normal") -> str:
    """``text`` cut with an ellipsis to fit ``width_pt``."""
    if text_width(text, size, weight) <= width_pt:
        return text
    while len(text) > 1 and text_width(text + "…", size, weight) > width_pt:
        text = text[:-1]
    return text.rstrip() + "…"


HAlign = Literal["left", "center", "right"]
VAlign = Literal["bottom", "baseline", "center", "center_baseline", "top"]


def plain_text(
    place: Transform,
    x: float,
    y: float,
    text: str,
    size: float,
    *,
    ha: HAlign = "center",
    va: VAlign = "baseline",
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
        fontproperties=font_properties(size, weight),
        rotation=rotation,
        rotation_mode="anchor" if rotation else "default",
        linespacing=LINE_SPACING if lines else None,
        parse_math=False,
        transform=place,
    )


# --- encoding ------------------------------------------------------------------------------


def encode(fig: Figure, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of ``fig`` (on a :class:`Canvas`, which saves under :func:`style`:
    svg.hashsalt, unhinted text), without dates or software versions in the metadata."""
    buffer = BytesIO()
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
