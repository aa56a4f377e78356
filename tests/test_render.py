"""Figures: formats and sizes, deterministic bytes, drawn data equal to the result's, layout."""

from __future__ import annotations

import ast
import hashlib
import itertools
import math
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
from initscope import figures
from initscope.engine.analysis import analyze
from initscope.figures import render_analysis, render_comparison
from initscope.figures.analysis import build_analysis_figure
from initscope.figures.canvas import Canvas, font_properties, style
from initscope.figures.comparison import build_comparison_figure
from initscope.figures.panels import Panel
from initscope.jobs import FigureOptions
from initscope.results import Analysis, Comparison, Variant
from matplotlib.artist import Artist
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.patches import StepPatch
from matplotlib.text import Text
from matplotlib.transforms import Bbox

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


def book_comparison() -> Comparison[Analysis]:
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


def panels(fig: Figure) -> list[Panel]:
    """The figure's panels, in reading order; a figure has no Axes (they cost the time)."""
    assert fig.axes == []
    return [artist for artist in fig.artists if isinstance(artist, Panel)]


def histogram_panels(fig: Figure) -> list[Panel]:
    return [p for p in panels(fig) if any(isinstance(patch, StepPatch) for patch in p.patches)]


def gradient_panels(fig: Figure) -> list[Panel]:
    return [p for p in panels(fig) if p.get_yscale() == "log"]


def step(panel: Panel) -> StepPatch:
    (patch,) = [p for p in panel.patches if isinstance(p, StepPatch)]
    return patch


def left_of(panel: Panel) -> list[Text]:
    """The tick labels left of the panel: its y scale."""
    return [t for t in panel.tick_labels if t.get_position()[0] < panel.box.x0]


def texts(fig: Figure) -> dict[str, list[Text]]:
    """Visible, non-empty text by role: figure texts, titles, axis labels, tick labels, and
    the texts inside panels (notes, line labels). Every text the figure draws has a role."""
    roles: dict[str, list[Text]] = {"figure": list(fig.texts), "title": [], "label": []}
    roles |= {"tick": [], "inside": []}
    for panel in panels(fig):
        if panel.title is not None:
            roles["title"].append(panel.title)
        roles["label"] += panel.labels
        roles["tick"] += panel.tick_labels
        roles["inside"] += panel.texts
    found = {
        role: [t for t in found if t.get_visible() and t.get_text()]
        for role, found in roles.items()
    }
    drawn = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text()]
    assert {id(t) for t in drawn} == {id(t) for role in found.values() for t in role}
    return found


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
    boxes_of = {id(text): panel for panel in panels(fig) for text in panel.texts}
    frame = fig.bbox
    for text in everything:
        box = boxes[id(text)]
        assert frame.x0 - 1 <= box.x0, text.get_text()
        assert box.x1 <= frame.x1 + 1, text.get_text()
        assert frame.y0 - 1 <= box.y0, text.get_text()
        assert box.y1 <= frame.y1 + 1, text.get_text()
        if text in found["inside"]:  # notes and line labels stay within their panel
            panel = boxes_of[id(text)].get_window_extent()
            assert panel.x0 - 1 <= box.x0, text.get_text()
            assert box.x1 <= panel.x1 + 1, text.get_text()
            assert panel.y0 - 1 <= box.y0, text.get_text()
            assert box.y1 <= panel.y1 + 1, text.get_text()
            continue
        for other in panels(fig):
            extent = other.get_window_extent()
            assert not overlap(box, extent, 1.0), (text.get_text(), other.get_title())


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
        "import hashlib, sys; from initscope.jobs import FigureOptions; "
        "from initscope.figures import render_analysis; from tests.test_render import book; "
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


def test_the_package_exports_every_renderer() -> None:
    assert sorted(figures.__all__) == [
        "render_analysis",
        "render_comparison",
        "render_search",
        "render_sweep",
        "render_training",
    ]
    for name in figures.__all__:
        fn = getattr(figures, name)
        assert pickle.loads(pickle.dumps(fn)) is fn


def test_figures_modules_use_each_other_through_public_names() -> None:
    private = [
        (path.name, node.module, alias.name)
        for path in sorted((ROOT / "service" / "initscope" / "figures").glob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("initscope")
        for alias in node.names
        if alias.name.startswith("_")
    ]
    assert private == []


def test_render_module_never_imports_pyplot() -> None:
    code = "import sys, initscope.figures; sys.exit('matplotlib.pyplot' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT).returncode == 0


# --- what is drawn -------------------------------------------------------------------------


def assert_maps_limits_onto_the_panel(panel: Panel, artist: Artist) -> None:
    """The artist's transform puts the panel's data limits on the panel's frame."""
    assert artist.get_transform() is panel.data_transform
    corners = list(itertools.product(panel.get_xlim(), panel.get_ylim()))
    extent = panel.get_window_extent()
    expected = list(itertools.product((extent.x0, extent.x1), (extent.y0, extent.y1)))
    np.testing.assert_allclose(artist.get_transform().transform(corners), expected, atol=1e-6)


def test_each_histogram_panel_draws_the_stored_counts_as_fractions() -> None:
    result = book()
    fig = build_analysis_figure(result, FigureOptions("png"))
    found = histogram_panels(fig)
    assert len(found) == len(result.simulation.layers) == 5
    for panel, layer in zip(found, result.simulation.layers, strict=True):
        patch = step(panel)
        histogram = layer.activations.histogram
        values, edges, baseline = patch.get_data()
        np.testing.assert_array_equal(values, np.array(histogram.counts) / histogram.total)
        np.testing.assert_array_equal(edges, histogram.edges)
        assert baseline == 0
        assert panel.get_xlim() == (histogram.edges[0], histogram.edges[-1])
        assert_maps_limits_onto_the_panel(panel, patch)


def test_histogram_panels_share_one_y_scale() -> None:
    found = histogram_panels(build_analysis_figure(book(), FigureOptions("png")))
    first = found[0]
    for panel in found[1:]:
        assert panel.get_ylim() == first.get_ylim()
        assert panel.get_window_extent().height == pytest.approx(first.get_window_extent().height)
        # The scale is labelled once, left of the row's first panel.
        assert not left_of(panel)
    scale = [t.get_text() for t in left_of(first)]
    assert scale[0] == "0"
    assert len(scale) >= 3


def test_panel_titles_follow_the_book() -> None:
    fig = build_analysis_figure(book(), FigureOptions("png"))
    titles = [panel.get_title() for panel in panels(fig)]
    assert titles == ["1-layer", "2-layer", "3-layer", "4-layer", "5-layer", "gradient"]


def test_title_names_the_verdict_and_the_network() -> None:
    result = book()
    fig = build_analysis_figure(result, FigureOptions("png"))
    assert fig.get_suptitle().replace("\n", " ") == (
        f"verdict: {result.diagnosis.verdict}  ·  5 x 100 sigmoid, normal(mean=0.0, std=1.0)"
    )
    footer = next(t for t in fig.texts if t.get_text().startswith("Recommendation"))
    advice = result.diagnosis.recommendation
    assert advice is not None
    reason = advice.reason
    assert " ".join(footer.get_text().split()) == f"Recommendation: {reason}"


def test_gradient_panel_plots_the_stored_ratios_and_gains_on_a_log_axis() -> None:
    result = book()
    fig = build_analysis_figure(result, FigureOptions("png"))
    ax = panels(fig)[-1]
    assert ax.get_yscale() == "log"
    gradient, gain = ax.lines
    layers = result.simulation.layers
    np.testing.assert_array_equal(gradient.get_xdata(), [layer.index for layer in layers])
    np.testing.assert_array_equal(
        gradient.get_ydata(), [layer.gradients.relative_to_last for layer in layers]
    )
    np.testing.assert_array_equal(gain.get_ydata(), [layer.mean_derivative_sq for layer in layers])
    labels = {" ".join(text.get_text().split()) for text in ax.texts}  # one line or two
    assert labels == {"grad RMS ÷ last", "E[φ\N{PRIME}(a)²]"}  # direct labels, no legend
    assert not fig.findobj(Legend)
    # A log axis: the limits at the frame's edges, the decade between them half-way.
    low, high = ax.get_ylim()
    extent = ax.get_window_extent()
    for line in (gradient, gain):
        assert_maps_limits_onto_the_panel(ax, line)
        middle = line.get_transform().transform((1.0, math.sqrt(low * high)))[1]
        assert middle == pytest.approx((extent.y0 + extent.y1) / 2)


def test_values_cut_off_by_a_fixed_range_are_noted_in_the_panels() -> None:
    result = clipped(0.0)
    fig = build_analysis_figure(result, FigureOptions("png"))
    for ax, layer in zip(histogram_panels(fig), result.simulation.layers, strict=True):
        histogram = layer.activations.histogram
        assert histogram.overflow > 0
        notes = [text.get_text() for text in ax.texts]
        assert any(note.endswith("above ▸") for note in notes), notes
        assert not any("below" in note for note in notes)  # zeros sit on the range's edge


def test_values_below_the_range_are_noted_too() -> None:
    result = clipped(0.1)
    fig = build_analysis_figure(result, FigureOptions("png"))
    first = histogram_panels(fig)[0]
    underflow = result.simulation.layers[0].activations.histogram.underflow
    assert underflow > 0
    assert any(text.get_text().startswith("◂ ") for text in first.texts)
    assert_no_overlaps(fig)


def test_overflowing_network_notes_non_finite_values_and_still_renders() -> None:
    result = small(20, activation="relu", init={"scheme": "normal", "std": 100.0})
    fig = build_analysis_figure(result, FigureOptions("png"))
    last = histogram_panels(fig)[-1]
    assert result.simulation.layers[-1].activations.histogram.non_finite > 0
    assert any("NaN/inf" in text.get_text() for text in last.texts)
    assert render_analysis(result, FigureOptions("png")).startswith(PNG_SIGNATURE)


# Every kind of text the figures set: sizes, weights, colours, rotations, the symbols.
SPECIMEN = [
    ("verdict: saturation  ·  5 x 100 sigmoid, normal(mean=0.0, std=1.0)", 10.0, "normal", 0),
    (
        "0 0.1 \N{MINUS SIGN}1 1.48e3 10⁻² 10¹ ◂ 53.1k below  32.2k above ▸ 3200 NaN/inf",
        6.5,
        "normal",
        0,
    ),
    ("Recommendation: grad RMS ÷ last  E[φ\N{PRIME}(a)²]  fraction of values", 7.5, "normal", 0),
    ("lecun_normal", 8.5, "bold", 90),
    ("fraction of values", 7.0, "normal", 90),
]


def specimen_pixels(canvas: type[FigureCanvasAgg], shift_px: float = 0.0) -> np.ndarray[Any, Any]:
    """The SPECIMEN drawn on ``canvas`` (500 x 150 px), ``shift_px`` to the right."""
    with style():
        fig = Figure(figsize=(5, 1.5), dpi=100)
        agg = canvas(fig)
        for i, (text, size, weight, rotation) in enumerate(SPECIMEN):
            x, y = (0.02, 0.85 - 0.2 * i) if not rotation else (0.85 + 0.07 * (i - 3), 0.1)
            color = "#8a1c1c" if i == 1 else "black"
            font = font_properties(size, weight)
            fig.text(
                x + shift_px / 500, y, text, fontproperties=font, rotation=rotation, color=color
            )
        agg.draw()  # type: ignore[no-untyped-call]  # backend_agg has no stubs
        pixels = agg.buffer_rgba()  # type: ignore[no-untyped-call]
        return np.asarray(pixels)[..., :3].astype(np.int64)


def test_text_drawn_as_outlines_looks_like_matplotlibs_glyph_rendering() -> None:
    """Our canvas fills each line's glyph outlines instead of rendering glyph by glyph: the
    same ink in the same pixels. (Text half a pixel off would differ in half of them.)"""
    reference = specimen_pixels(FigureCanvasAgg)
    inked = int((reference < 250).any(axis=-1).sum())
    for shift, expected in ((0.0, True), (0.5, False)):
        ours = specimen_pixels(Canvas, shift)
        ink = (255 - ours).sum() / (255 - reference).sum()
        far = int((np.abs(ours - reference).max(axis=-1) > 64).sum())
        assert (abs(ink - 1) < 0.02 and far < 0.05 * inked) is expected, (shift, ink, far, inked)


# --- layout --------------------------------------------------------------------------------


def test_twenty_layers_wrap_into_rows_of_at_most_six() -> None:
    fig = build_analysis_figure(deep(), FigureOptions("png"))
    assert len(panels(fig)) == 21
    rows: dict[float, int] = {}
    for panel in panels(fig):
        y = round(panel.get_window_extent().y0, 6)
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
    assert len(histogram_panels(fig)) == 3 * 5
    gradients = gradient_panels(fig)
    assert len(gradients) == 3
    assert len(panels(fig)) == 3 * (5 + 1)
    limits = {ax.get_ylim() for ax in gradients}
    assert len(limits) == 1
    heights = {round(ax.get_window_extent().height, 6) for ax in gradients}
    assert len(heights) == 1  # the same limits over the same height: one scale
    for ax in gradients:
        assert [t for t in ax.tick_labels if t.get_position()[0] > ax.box.x1]  # each labelled
        for line in ax.lines:
            assert_maps_limits_onto_the_panel(ax, line)
    column_x = {round(ax.get_window_extent().x0, 6) for ax in gradients}
    assert len(column_x) == 1  # one column, the last
    assert all(
        ax.get_window_extent().x0 > other.get_window_extent().x0
        for ax in gradients
        for other in histogram_panels(fig)
    )


def test_comparison_labels_rows_and_columns() -> None:
    fig = build_comparison_figure(book_comparison(), FigureOptions("png"))
    titles = [panel.get_title() for panel in panels(fig) if panel.get_title()]
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
    found = histogram_panels(fig)
    layers = [layer for v in comparison.variants for layer in v.result.simulation.layers]
    assert len(found) == len(layers)
    for panel, layer in zip(found, layers, strict=True):
        patch = step(panel)
        histogram = layer.activations.histogram
        expected = np.array(histogram.counts) / histogram.total
        values, edges, _ = patch.get_data()
        np.testing.assert_array_equal(values, expected)
        np.testing.assert_array_equal(edges, histogram.edges)
        assert panel.get_ylim() == found[0].get_ylim()  # one fraction scale for every variant
        assert_maps_limits_onto_the_panel(panel, patch)


def test_comparison_of_different_depths_leaves_missing_panels_blank() -> None:
    comparison = Comparison((Variant("five", book()), Variant("eight", small(8))))
    fig = build_comparison_figure(comparison, FigureOptions("png"))
    cells = {panel.cell for panel in panels(fig)}
    assert cells == {(0, c) for c in (*range(5), 8)} | {(1, c) for c in range(9)}
    assert len(histogram_panels(fig)) == 5 + 8
    assert len(gradient_panels(fig)) == 2
    assert {panel.cell for panel in gradient_panels(fig)} == {(0, 8), (1, 8)}
    # Nothing is drawn where the shallower variant's panels would be: no frame, no text.
    five = panels(fig)[0].get_window_extent()
    drawn = [p.get_window_extent() for p in panels(fig)]
    drawn += [t.get_window_extent() for role in texts(fig).values() for t in role]
    for panel in panels(fig):
        if panel.cell[0] == 1 and 5 <= panel.cell[1] < 8:
            x0, x1 = panel.get_window_extent().x0, panel.get_window_extent().x1
            blank = Bbox([[x0, five.y0], [x1, five.y1]])
            assert not any(overlap(blank, box) for box in drawn)
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
    label = next(t for t in panels(fig)[0].labels if t.get_text() == "activation")
    label.set_text("a long label that runs into the next panel " * 2)
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
