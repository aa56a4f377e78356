"""The figure of one analysis: a histogram panel per layer and a gradient panel (no Axes: the
panels are :class:`~initscope.figures.panels.Panel` artists placed by the panel grid)."""

from __future__ import annotations

from matplotlib.figure import Figure

from initscope.figures.canvas import (
    FOOTER_PT,
    LINE_SPACING,
    PANEL_TITLE_PT,
    TITLE_PT,
    encode,
    fit,
    font_properties,
    style,
    text_height,
    wrap,
)
from initscope.figures.panels import (
    EDGE,
    GAP,
    PANEL_TITLE_H,
    XLABEL_H,
    XTICKS_H,
    YTICK_ROOM,
    Frame,
    add_title,
    decade_label_width,
    fraction_axis,
    fraction_scale,
    fraction_tick_width,
    gradient_panel,
    gradient_values,
    histogram_panel,
    log_limits,
    new_figure,
    panel_grid,
    plan_figure,
    summary,
    title_lines,
)
from initscope.jobs import FigureOptions
from initscope.labels import layer_extras
from initscope.results import Analysis

__all__ = ["build_analysis_figure", "render_analysis"]


def build_analysis_figure(result: Analysis, options: FigureOptions) -> Figure:
    """One histogram panel per layer ("1-layer", ...) and a final "gradient" panel.

    Histograms are the stored counts as fractions of each layer's values (out-of-range and
    non-finite ones included in the total, and noted in the panel's corners), on a y scale
    shared by all layers. The gradient panel shows RMS(dL/dh_l) / RMS(dL/dh_L) and
    E[phi'(a_l)^2] per layer on one log axis. Title: the verdict and the network; footer: the
    recommendation's reason. The panels are :class:`~initscope.figures.panels.Panel` artists, in
    reading order.
    """
    with style():
        return _analysis_figure(result, options)


def _analysis_figure(result: Analysis, options: FigureOptions) -> Figure:
    layers = result.simulation.layers
    histograms = [layer.activations.histogram for layer in layers]
    rows, cols = panel_grid(len(layers) + 1)
    limits = log_limits(gradient_values(layers, gain=True))
    heading = [f"verdict: {result.diagnosis.verdict}", summary(layers)]
    advice = result.diagnosis.recommendation
    reason = f"Recommendation: {advice.reason}" if advice else "No recommendation asked for."

    def frame_at(width_pt: float) -> Frame:
        title = title_lines(heading, width_pt - 2 * EDGE)
        footer = tuple(wrap(reason, width_pt - 2 * EDGE, FOOTER_PT))
        top = EDGE + text_height(len(title), TITLE_PT) + GAP + PANEL_TITLE_H
        bottom = EDGE + text_height(len(footer), FOOTER_PT) + GAP + XTICKS_H + XLABEL_H
        return Frame(top, bottom, title, footer)

    left = EDGE + XLABEL_H + fraction_tick_width(histograms) + YTICK_ROOM
    right = EDGE + decade_label_width(limits) + YTICK_ROOM
    hgap = XTICKS_H + XLABEL_H + GAP + PANEL_TITLE_H
    plan = plan_figure(rows, cols, options, (left, right, hgap), frame_at)
    fig, place = new_figure(plan)
    scale = fraction_scale(histograms, plan.panel_h)

    for i, histogram in enumerate(histograms):
        cell = divmod(i, cols)
        panel = histogram_panel(fig, place, plan.box(*cell), histogram, scale, cell)
        extras = layer_extras(layers[i])
        title = f"{i + 1}-layer" + (f" · {extras}" if extras else "")
        panel.set_title(fit(title, plan.panel_w, PANEL_TITLE_PT))
        if cell[1] == 0:  # the scale and axis labels on the first column only: all are alike
            fraction_axis(panel, scale)
        fig.add_artist(panel)
    cell = divmod(len(layers), cols)
    panel = gradient_panel(
        fig, place, plan.box(*cell), layers, gain=True, limits=limits, labels=True, cell=cell
    )
    panel.set_title("gradient")
    panel.set_xlabel("layer")
    fig.add_artist(panel)

    add_title(fig, plan)
    if plan.frame.footer:
        fig.text(
            EDGE / plan.width_pt,
            EDGE / plan.height_pt,
            "\n".join(plan.frame.footer),
            ha="left",
            va="bottom",
            fontproperties=font_properties(FOOTER_PT),
            linespacing=LINE_SPACING,
            parse_math=False,
        )
    return fig


def render_analysis(result: Analysis, options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_analysis_figure`; top-level, so a process pool runs it."""
    return encode(build_analysis_figure(result, options), options)
