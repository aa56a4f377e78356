"""Figures of results, drawn with matplotlib's object API on the Agg canvas (never pyplot) and
returned as PNG or SVG bytes: the same result and options give the same bytes.

``canvas`` holds the style, the canvas and the encoder every figure uses; ``panels`` the
Axes-free panels and panel grid of the analysis and comparison figures; one module per kind
of figure builds it (``build_*_figure``) and encodes it (``render_*``, top-level functions a
process pool can run).
"""

from initscope.figures.analysis import render_analysis
from initscope.figures.comparison import render_comparison
from initscope.figures.search import render_search
from initscope.figures.sweep import render_sweep
from initscope.figures.training import render_training

__all__ = [
    "render_analysis",
    "render_comparison",
    "render_search",
    "render_sweep",
    "render_training",
]
