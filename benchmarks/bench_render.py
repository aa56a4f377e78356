"""Rendering benchmark: ``initscope.figures`` against the naive pyplot figure of raw
activations.

Run by hand: ``.venv/bin/python benchmarks/bench_render.py`` (``--profile`` adds a cProfile
summary of our PNG rendering; ``--repeat N`` sets the repetitions, default 5).

Cases, each timed in this process, one warm-up each, then interleaved repetitions (the order
rotates every repetition), best (min) of N reported:

* ``analysis``: the book's figure (1000 x 100 input, 5 sigmoid layers of 100, std 1).
  Ours: ``render_analysis(result, FigureOptions("png"))`` (and ``"svg"``) from the frozen
  result -- 5 histogram panels, the gradient panel, title and wrapped footer. Naive:
  ``matplotlib.pyplot`` figure, one subplot per layer, ``ax.hist(h.ravel(), 30, range=(0, 1))``
  on the raw activations, ``fig.savefig(BytesIO, format="png")``.
* ``compare``: 3 x 5 (sigmoid with std 1, std 0.01, lecun_normal). Ours:
  ``render_comparison`` (15 histogram panels + the gradient column, row labels, verdicts).
  Naive: a 3 x 5 pyplot grid of ``ax.hist`` on the raw activations.

The simulations and the naive raw activations (a plain NumPy forward pass, same shapes, the
same init scales) are computed before the timed region: only drawing and encoding are timed.
The target is ours >= 3x faster than naive.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib.util
import io
import pstats
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if importlib.util.find_spec("tests") is None:  # run as a file: tests/ is at the root
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
if importlib.util.find_spec("initscope") is None:  # run without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import matplotlib

matplotlib.use("Agg")  # the naive baseline uses pyplot; ours never does

import matplotlib.pyplot as plt
import numpy as np
from initscope.engine.analysis import analyze
from initscope.figures import render_analysis, render_comparison
from initscope.jobs import FigureOptions
from initscope.results import Analysis, Comparison, Variant
from numpy.typing import NDArray

from tests.helpers import book_job

TARGET = 3.0
Array = NDArray[np.float64]


def raw_activations(std: float | None, seed: int = 0) -> list[Array]:
    """The book's forward pass in plain NumPy: x ~ N(0, 1) 1000 x 100, 5 sigmoid layers of
    100, weights N(0, std^2) (``None``: 1/sqrt(fan_in)), no bias."""
    rng = np.random.default_rng(seed)
    h = rng.standard_normal((1000, 100))
    layers = []
    for _ in range(5):
        scale = std if std is not None else 1 / np.sqrt(h.shape[1])
        h = 1 / (1 + np.exp(-(h @ (rng.standard_normal((100, 100)) * scale))))
        layers.append(h)
    return layers


def naive_png(grid: Sequence[Sequence[Array]]) -> bytes:
    """One pyplot subplot per layer (a row per network), ``ax.hist`` on the raw values."""
    rows, cols = len(grid), len(grid[0])
    fig = plt.figure()  # pyplot's default 6.4 x 4.8 in at 100 dpi
    for r, layers in enumerate(grid):
        for c, h in enumerate(layers):
            ax = fig.add_subplot(rows, cols, r * cols + c + 1)
            ax.hist(h.ravel(), 30, range=(0, 1))
            ax.set_title(f"{c + 1}-layer")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def best_of(cases: dict[str, Callable[[], bytes]], repeat: int) -> dict[str, float]:
    """Best wall time (ms) of each case: one warm-up each, then interleaved, rotating order."""
    for fn in cases.values():
        fn()
    names = list(cases)
    best = dict.fromkeys(names, float("inf"))
    for rep in range(repeat):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            start = time.perf_counter()
            cases[name]()
            best[name] = min(best[name], (time.perf_counter() - start) * 1e3)
    return best


# (file suffix, function name) -> what it stands for, in the profile summary. Ours makes no
# Axes (a Panel artist per panel) and fills text as cached glyph outlines; the first two rows
# were the costliest part of the figure before that, and should stay at 0.
HOTSPOTS = {
    ("figure.py", "add_subplot"): "Axes construction (add_subplot)",
    ("axis.py", "_get_tick"): "tick creation (Axis._get_tick)",
    ("panels.py", "histogram_panel"): "histogram panels (panels.histogram_panel)",
    ("panels.py", "gradient_panel"): "gradient panels (panels.gradient_panel)",
    ("text.py", "draw"): "text drawing (Text.draw)",
    ("canvas.py", "draw_text"): "  of which glyph outlines (canvas draw_text)",
    ("backend_agg.py", "draw"): "drawing everything (FigureCanvasAgg.draw)",
    ("~", "<method 'encode' of 'ImagingEncoder' objects>"): "PNG encoding (Pillow zlib)",
    ("canvas.py", "text_width"): "our text measuring (canvas.text_width)",
}


def profile(fn: Callable[[], bytes], runs: int = 10, top: int = 20) -> None:
    """cProfile ``runs`` calls: the share of the hot spots, then the top functions."""
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        fn()
    profiler.disable()
    stats = pstats.Stats(profiler)
    table: dict[tuple[str, int, str], tuple[Any, ...]] = stats.stats  # type: ignore[attr-defined]
    total = max(entry[3] for entry in table.values())
    for (suffix, name), label in HOTSPOTS.items():
        cumulative = max(
            (
                entry[3]
                for (file, _, func), entry in table.items()
                if file.endswith(suffix) and func == name
            ),
            default=0.0,
        )
        print(f"  {label:<45} {cumulative / total:6.1%}")
    stats.sort_stats("tottime").print_stats(top)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=5, help="repetitions (best of N)")
    parser.add_argument("--profile", action="store_true", help="cProfile our PNG renderings")
    args = parser.parse_args(argv)

    book: Analysis = analyze(book_job("sigmoid", "std=1"))
    comparison = Comparison(
        tuple(
            Variant(name, analyze(book_job("sigmoid", init)))
            for name, init in (("std=1", "std=1"), ("std=0.01", "std=0.01"), ("xavier", "xavier"))
        )
    )
    raw = raw_activations(1.0)
    raw_grid = [raw, raw_activations(0.01), raw_activations(None)]
    png, svg = FigureOptions("png"), FigureOptions("svg")

    cases: dict[str, Callable[[], bytes]] = {
        "analysis ours png": lambda: render_analysis(book, png),
        "analysis ours svg": lambda: render_analysis(book, svg),
        "analysis naive png": lambda: naive_png([raw]),
        "compare ours png": lambda: render_comparison(comparison, png),
        "compare ours svg": lambda: render_comparison(comparison, svg),
        "compare naive png": lambda: naive_png(raw_grid),
    }
    best = best_of(cases, args.repeat)

    print(f"matplotlib {matplotlib.__version__}, numpy {np.__version__}, best of {args.repeat}")
    print(f"{'case':<10} {'naive png':>10} {'ours png':>10} {'ours svg':>10} {'naive/ours':>11}")
    for case, shape in (("analysis", "1 x 5"), ("compare", "3 x 5")):
        naive, ours = best[f"{case} naive png"], best[f"{case} ours png"]
        print(
            f"{case:<10} {naive:>8.1f}ms {ours:>8.1f}ms {best[f'{case} ours svg']:>8.1f}ms"
            f" {naive / ours:>10.2f}x  ({shape} panels; target >= {TARGET:.0f}x:"
            f" {'met' if naive / ours >= TARGET else 'not met'})"
        )
    if args.profile:
        print("\n--- cProfile: render_analysis png, 10 runs (share of the total) ---")
        profile(cases["analysis ours png"])
        print("\n--- cProfile: render_comparison png, 10 runs (share of the total) ---")
        profile(cases["compare ours png"])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
