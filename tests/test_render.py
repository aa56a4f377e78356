"""Figures: formats and sizes, deterministic bytes, drawn data equal to the result's, layout."""

from __future__ import annotations

import hashlib
import itertools
import pickle
import re
import struct
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import StepPatch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from service.analysis import analyze
from service.jobs import FigureOptions
from service.render import (
    build_analysis_figure,
    build_comparison_figure,
    render_analysis,
    render_comparison,
)
from service.results import Analysis, Comparison, Variant
from tests.helpers import book_job, make_job

ROOT = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
LAYER_TITLE = re.compile(r"^(\d+)-layer$")


@cache
def book(init: str = "std=1", activation: str = "sigmoid") -> Analysis:
    return analyze(book_job(activation, init))


def small(depth: int, activation: str = "tanh", **extra: Any) -> Analysis:
    body: dict[str, Any] = {
        "network": {
            "input_dim": 16,
            "depth": depth,
            "width": 16,
            "activation": activation,
            "init": extra.pop("init", {"scheme": "normal", "std": 1.0}),
        },
        "input": {"samples": 200},
        "seed": 0,
        **extra,
    }
    return analyze(make_job(body))


@cache
def deep() -> Analysis:
    return small(20)


@cache
def clipped(low: float) -> Analysis:
    """ReLU (He) with a fixed histogram range that cuts values off."""
    body = {
        "network": {
            "input_dim": 100,
            "depth": 5,
            "width": 100,
            "activation": "relu",
            "init": {"scheme": "he_normal"},
        },
        "input": {"samples": 1000},
        "histogram": {"range": [low, 0.5]},
        "seed": 0,
    }
    return analyze(make_job(body))


def book_comparison() -> Comparison:
    return Comparison(
        (
            Variant("std=1", book("std=1")),
            Variant("std=0.01", book("std=0.01")),
            Variant("lecun_normal", book("xavier")),
        )
    )


def png_size(data: bytes) -> tuple[int, int]:
    assert data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def histogram_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if any(isinstance(p, StepPatch) for p in ax.patches)]


def gradient_axes(fig: Figure) -> list[Axes]:
    return [ax for ax in fig.axes if ax.axison and ax.get_yscale() == "log"]


def texts(fig: Figure) -> dict[str, list[Text]]:
    """Visible, non-empty text by role: figure texts, titles, axis labels, tick labels, and
    the texts inside panels (notes, line labels)."""
    roles: dict[str, list[Text]] = {"figure": list(fig.texts), "title": [], "label": []}
    roles |= {"tick": [], "inside": []}
    for ax in fig.axes:
        if not ax.axison:
            continue
        roles["title"].append(ax.title)
        for axis in (ax.xaxis, ax.yaxis):
            if axis.get_visible():
                roles["label"].append(axis.label)
                roles["tick"] += axis.get_majorticklabels()
        roles["inside"] += ax.texts
    return {
        role: [t for t in found if t.get_visible() and t.get_text()]
        for role, found in roles.items()
    }


def overlap(a: Bbox, b: Bbox, tolerance: float = 0.5) -> bool:
    width = min(a.x1, b.x1) - max(a.x0, b.x0)
    height = min(a.y1, b.y1) - max(a.y0, b.y0)
    return bool(width > tolerance and height > tolerance)


def assert_no_overlaps(fig: Figure) -> None:
    """No two texts overlap; no text outside the panels runs into a panel or off the figure."""
    fig.canvas.draw()
    found = texts(fig)
    everything = [t for role in found.values() for t in role]
    boxes = {id(t): t.get_window_extent() for t in everything}
    for a, b in itertools.combinations(everything, 2):
        assert not overlap(boxes[id(a)], boxes[id(b)]), (a.get_text(), b.get_text())
    panels = [ax for ax in fig.axes if ax.axison]
    frame = fig.bbox
    for text in everything:
        box = boxes[id(text)]
        assert frame.x0 - 1 <= box.x0, text.get_text()
        assert box.x1 <= frame.x1 + 1, text.get_text()
        assert frame.y0 - 1 <= box.y0, text.get_text()
        assert box.y1 <= frame.y1 + 1, text.get_text()
        if text in found["inside"]:  # notes and line labels stay within their panel
            assert text.axes is not None
            panel = text.axes.get_window_extent()
            assert panel.x0 - 1 <= box.x0, text.get_text()
            assert box.x1 <= panel.x1 + 1, text.get_text()
            assert panel.y0 - 1 <= box.y0, text.get_text()
            assert box.y1 <= panel.y1 + 1, text.get_text()
            continue
        for ax in panels:
            assert not overlap(box, ax.get_window_extent(), 1.0), (text.get_text(), ax.get_title())


# --- formats and sizes ---------------------------------------------------------------------


def test_png_has_the_signature_and_the_requested_pixel_size() -> None:
    data = render_analysis(book(), FigureOptions("png", width=1200, height=800, dpi=100))
    assert data.startswith(PNG_SIGNATURE)
    assert png_size(data) == (1200, 800)


@pytest.mark.parametrize(("width", "height", "dpi"), [(640, 480, 72), (1001, 333, 110)])
def test_png_pixel_size_holds_at_other_dpi(width: int, height: int, dpi: int) -> None:
    data = render_analysis(book(), FigureOptions("png", width=width, height=height, dpi=dpi))
    assert png_size(data) == (width, height)


def test_derived_size_grows_with_the_panel_grid() -> None:
    five = png_size(render_analysis(book(), FigureOptions("png")))
    twenty = png_size(render_analysis(deep(), FigureOptions("png")))
    assert five[0] == pytest.approx(twenty[0], abs=40)  # both 6 columns wide
    assert twenty[1] > 2.5 * five[1]  # 4 rows against 1


def test_svg_is_an_xml_svg_document() -> None:
    data = render_analysis(book(), FigureOptions("svg"))
    assert data.startswith(b"<?xml")
    assert b"<svg" in data


@pytest.mark.parametrize("fmt", ["png", "svg"])
def test_same_input_gives_the_same_bytes(fmt: str) -> None:
    options = FigureOptions(fmt)  # type: ignore[arg-type]
    assert render_analysis(book(), options) == render_analysis(book(), options)
    comparison = book_comparison()
    assert render_comparison(comparison, options) == render_comparison(comparison, options)


def test_svg_bytes_do_not_depend_on_the_process() -> None:
    """Element ids come from a hash salted per process unless ``svg.hashsalt`` is fixed."""
    code = (
        "import hashlib, sys; from service.jobs import FigureOptions; "
        "from service.render import render_analysis; from tests.test_render import book; "
        "svg = render_analysis(book(), FigureOptions('svg')); "
        "sys.stdout.write(hashlib.sha256(svg).hexdigest())"
    )
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True, cwd=ROOT)
    ours = hashlib.sha256(render_analysis(book(), FigureOptions("svg"))).hexdigest()
    assert child.stdout.decode() == ours


def test_different_results_give_different_bytes() -> None:
    options = FigureOptions("png")
    assert render_analysis(book("std=1"), options) != render_analysis(book("std=0.01"), options)


def test_renderers_are_picklable_top_level_functions() -> None:
    for fn in (render_analysis, render_comparison):
        assert pickle.loads(pickle.dumps(fn)) is fn


def test_render_module_never_imports_pyplot() -> None:
    code = "import sys, service.render; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT).returncode == 0


# --- what is drawn -------------------------------------------------------------------------


def test_each_histogram_panel_draws_the_stored_counts_as_fractions() -> None:
    result = book()
    fig = build_analysis_figure(result, FigureOptions("png"))
    panels = histogram_axes(fig)
    assert len(panels) == len(result.simulation.layers) == 5
    for ax, layer in zip(panels, result.simulation.layers, strict=True):
        (patch,) = [p for p in ax.patches if isinstance(p, StepPatch)]
        histogram = layer.activations.histogram
        values, edges, _ = patch.get_data()
        np.testing.assert_array_equal(values, np.array(histogram.counts) / histogram.total)
        np.testing.assert_array_equal(edges, histogram.edges)
        assert ax.get_xlim() == (histogram.edges[0], histogram.edges[-1])


def test_histogram_panels_share_one_y_scale() -> None:
    panels = histogram_axes(build_analysis_figure(book(), FigureOptions("png")))
    for ax in panels[1:]:
        assert ax.get_shared_y_axes().joined(panels[0], ax)
        assert ax.get_ylim() == panels[0].get_ylim()


def test_panel_titles_follow_the_book() -> None:
    fig = build_analysis_figure(book(), FigureOptions("png"))
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["1-layer", "2-layer", "3-layer", "4-layer", "5-layer", "gradient"]


def test_title_names_the_verdict_and_the_network() -> None:
    result = book()
    fig = build_analysis_figure(result, FigureOptions("png"))
    assert fig.get_suptitle().replace("\n", " ") == (
        f"verdict: {result.diagnosis.verdict}  ·  5 x 100 sigmoid, normal(mean=0.0, std=1.0)"
    )
    footer = next(t for t in fig.texts if t.get_text().startswith("Recommendation"))
    reason = result.diagnosis.recommendation.reason
    assert " ".join(footer.get_text().split()) == f"Recommendation: {reason}"


def test_gradient_panel_plots_the_stored_ratios_and_gains_on_a_log_axis() -> None:
    result = book()
    ax = build_analysis_figure(result, FigureOptions("png")).axes[-1]
    assert ax.get_yscale() == "log"
    gradient, gain = ax.get_lines()
    layers = result.simulation.layers
    np.testing.assert_array_equal(gradient.get_xdata(), [layer.index for layer in layers])
    np.testing.assert_array_equal(
        gradient.get_ydata(), [layer.gradients.relative_to_last for layer in layers]
    )
    np.testing.assert_array_equal(gain.get_ydata(), [layer.mean_derivative_sq for layer in layers])
    labels = {" ".join(text.get_text().split()) for text in ax.texts}  # one line or two
    assert labels == {"grad RMS ÷ last", "E[φ\N{PRIME}(a)²]"}  # direct labels, no legend
    assert ax.get_legend() is None


def test_values_cut_off_by_a_fixed_range_are_noted_in_the_panels() -> None:
    result = clipped(0.0)
    fig = build_analysis_figure(result, FigureOptions("png"))
    for ax, layer in zip(histogram_axes(fig), result.simulation.layers, strict=True):
        histogram = layer.activations.histogram
        assert histogram.overflow > 0
        notes = [text.get_text() for text in ax.texts]
        assert any(note.endswith("above ▸") for note in notes), notes
        assert not any("below" in note for note in notes)  # zeros sit on the range's edge


def test_values_below_the_range_are_noted_too() -> None:
    result = clipped(0.1)
    fig = build_analysis_figure(result, FigureOptions("png"))
    first = histogram_axes(fig)[0]
    underflow = result.simulation.layers[0].activations.histogram.underflow
    assert underflow > 0
    assert any(text.get_text().startswith("◂ ") for text in first.texts)
    assert_no_overlaps(fig)


def test_overflowing_network_notes_non_finite_values_and_still_renders() -> None:
    result = small(20, activation="relu", init={"scheme": "normal", "std": 100.0})
    fig = build_analysis_figure(result, FigureOptions("png"))
    last = histogram_axes(fig)[-1]
    assert result.simulation.layers[-1].activations.histogram.non_finite > 0
    assert any("NaN/inf" in text.get_text() for text in last.texts)
    assert render_analysis(result, FigureOptions("png")).startswith(PNG_SIGNATURE)


# --- layout --------------------------------------------------------------------------------


def test_twenty_layers_wrap_into_rows_of_at_most_six() -> None:
    fig = build_analysis_figure(deep(), FigureOptions("png"))
    assert len(fig.axes) == 21
    rows: dict[float, int] = {}
    for ax in fig.axes:
        y = round(ax.get_position().y0, 6)
        rows[y] = rows.get(y, 0) + 1
    assert len(rows) == 4
    assert max(rows.values()) <= 6


@pytest.mark.parametrize(
    ("result", "options"),
    [
        pytest.param(deep, FigureOptions("png"), id="20-layers"),
        pytest.param(book, FigureOptions("png"), id="book"),
        pytest.param(book, FigureOptions("png", width=1200, height=800), id="book-1200x800"),
        pytest.param(book, FigureOptions("png", width=700, height=700), id="book-700x700"),
        pytest.param(deep, FigureOptions("png", width=1000, height=900), id="20-layers-1000x900"),
        pytest.param(lambda: clipped(0.0), FigureOptions("png"), id="notes"),
    ],
)
def test_no_text_overlaps_another_or_a_panel(result: Any, options: FigureOptions) -> None:
    assert_no_overlaps(build_analysis_figure(result(), options))


def test_footer_wraps_within_the_figure_width() -> None:
    fig = build_analysis_figure(book(), FigureOptions("png", width=700, height=700))
    fig.canvas.draw()
    footer = next(t for t in fig.texts if t.get_text().startswith("Recommendation"))
    assert footer.get_text().count("\n") >= 2
    assert footer.get_window_extent().x1 <= fig.bbox.x1


# --- comparison ----------------------------------------------------------------------------


def test_comparison_grid_has_a_row_per_variant_and_a_shared_log_gradient_column() -> None:
    fig = build_comparison_figure(book_comparison(), FigureOptions("png"))
    assert len(histogram_axes(fig)) == 3 * 5
    gradients = gradient_axes(fig)
    assert len(gradients) == 3
    assert len(fig.axes) == 3 * (5 + 1)
    limits = {ax.get_ylim() for ax in gradients}
    assert len(limits) == 1
    for ax in gradients[1:]:
        assert ax.get_shared_y_axes().joined(gradients[0], ax)
    column_x = {round(ax.get_position().x0, 6) for ax in gradients}
    assert len(column_x) == 1  # one column, the last
    assert all(
        ax.get_position().x0 > other.get_position().x0
        for ax in gradients
        for other in histogram_axes(fig)
    )


def test_comparison_labels_rows_and_columns() -> None:
    fig = build_comparison_figure(book_comparison(), FigureOptions("png"))
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == ["1-layer", "2-layer", "3-layer", "4-layer", "5-layer", "gradient"]
    figure_texts = [text.get_text() for text in fig.texts]
    assert fig.get_suptitle() == "initscope comparison"
    for name, init in (("std=1", "std=1"), ("std=0.01", "std=0.01"), ("lecun_normal", "xavier")):
        assert name in figure_texts
        assert f"verdict: {book(init).diagnosis.verdict}" in figure_texts
    bold = [t for t in fig.texts if t.get_text() == "std=1"]
    assert bold[0].get_fontweight() == "bold"


def test_comparison_histograms_equal_each_variants_counts() -> None:
    comparison = book_comparison()
    fig = build_comparison_figure(comparison, FigureOptions("png"))
    panels = histogram_axes(fig)
    layers = [layer for v in comparison.variants for layer in v.analysis.simulation.layers]
    for ax, layer in zip(panels, layers, strict=True):
        (patch,) = [p for p in ax.patches if isinstance(p, StepPatch)]
        histogram = layer.activations.histogram
        expected = np.array(histogram.counts) / histogram.total
        values, _, _ = patch.get_data()
        np.testing.assert_array_equal(values, expected)


def test_comparison_of_different_depths_leaves_missing_panels_blank() -> None:
    comparison = Comparison((Variant("five", book()), Variant("eight", small(8))))
    fig = build_comparison_figure(comparison, FigureOptions("png"))
    blank = [ax for ax in fig.axes if not ax.axison]
    assert len(blank) == 8 - 5
    assert all(not any(isinstance(p, StepPatch) for p in ax.patches) for ax in blank)
    assert len(histogram_axes(fig)) == 5 + 8
    assert len(gradient_axes(fig)) == 2
    assert_no_overlaps(fig)
    assert render_comparison(comparison, FigureOptions("png")).startswith(PNG_SIGNATURE)


def test_comparison_text_does_not_overlap() -> None:
    assert_no_overlaps(build_comparison_figure(book_comparison(), FigureOptions("png")))


def test_comparison_png_has_the_requested_size() -> None:
    data = render_comparison(book_comparison(), FigureOptions("png", width=1500, height=900))
    assert png_size(data) == (1500, 900)


def test_empty_comparison_is_refused() -> None:
    with pytest.raises(ValueError, match="at least one variant"):
        build_comparison_figure(Comparison(()), FigureOptions("png"))


def test_the_overlap_check_catches_overlapping_text() -> None:
    fig = build_analysis_figure(book(), FigureOptions("png"))
    fig.axes[0].set_xlabel("a long label that runs into the next panel " * 2)
    with pytest.raises(AssertionError):
        assert_no_overlaps(fig)


@pytest.mark.parametrize(("width", "height", "dpi"), [(200, 200, 300), (400, 250, 100)])
def test_a_canvas_too_small_for_the_panels_keeps_its_pixels_and_its_text_apart(
    width: int, height: int, dpi: int
) -> None:
    options = FigureOptions("png", width=width, height=height, dpi=dpi)
    fig = build_analysis_figure(deep(), options)
    assert fig.dpi < dpi  # drawn at fewer pixels per point, so the points fit
    assert_no_overlaps(fig)
    assert png_size(render_analysis(deep(), options)) == (width, height)


def test_a_derived_size_is_capped() -> None:
    comparison = Comparison((Variant("a", deep()), Variant("b", small(20, activation="relu"))))
    width, height = png_size(render_comparison(comparison, FigureOptions("png", dpi=150)))
    assert width <= 4000
    assert height <= 4000
