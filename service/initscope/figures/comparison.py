"""The figure of a comparison: a row of panels per variant -- a histogram per layer and a
gradient column on one shared log axis -- labelled with the variant's name and verdict (no
Axes: the panels are :class:`~initscope.figures.panels.Panel` artists placed by the panel
grid)."""

from __future__ import annotations

from matplotlib.figure import Figure

from initscope.figures.canvas import (
    LABEL_PT,
    LINE_SPACING,
    ROW_LABEL_PT,
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
    GRADIENT_LABEL,
    PANEL_TITLE_H,
    XLABEL_H,
    XTICKS_H,
    YTICK_ROOM,
    Frame,
    Plan,
    add_title,
    decade_label_width,
    fraction_scale,
    fraction_tick_width,
    gradient_panel,
    gradient_values,
    histogram_panel,
    log_limits,
    network_extras,
    new_figure,
    plan_figure,
    title_lines,
)
from initscope.jobs import FigureOptions
from initscope.results import Analysis, Comparison

__all__ = ["build_comparison_figure", "render_comparison"]


def build_comparison_figure(comparison: Comparison[Analysis], options: FigureOptions) -> Figure:
    """A row per variant (its name and verdict at the left), a column per layer ("k-layer"),
    and a last "gradient" column whose panels share one log y axis. Rows of shallower
    variants leave their missing panels blank."""
    with style():
        return _comparison_figure(comparison, options)


def _comparison_figure(comparison: Comparison[Analysis], options: FigureOptions) -> Figure:
    variants = comparison.variants
    if not variants:
        raise ValueError("a comparison needs at least one variant")
    analyses = [variant.result for variant in variants]
    depths = [len(a.simulation.layers) for a in analyses]
    depth = max(depths)
    rows, cols = len(variants), depth + 1
    histograms = [layer.activations.histogram for a in analyses for layer in a.simulation.layers]
    limits = log_limits(
        [v for a in analyses for v in gradient_values(a.simulation.layers, gain=False)]
    )
    decades = decade_label_width(limits)
    verdicts = [
        f"verdict: {a.diagnosis.verdict}"
        + (f" · {extras}" if (extras := network_extras(a.simulation.layers)) else "")
        for a in analyses
    ]

    def frame_at(width_pt: float) -> Frame:
        title = title_lines(["initscope comparison"], width_pt - 2 * EDGE)
        top = EDGE + text_height(len(title), TITLE_PT) + GAP + PANEL_TITLE_H
        return Frame(top, EDGE + XTICKS_H + XLABEL_H, title)

    def planned(name_lines: int) -> Plan:
        row_label = text_height(name_lines, ROW_LABEL_PT) + text_height(1, LABEL_PT) + GAP
        left = EDGE + row_label + XLABEL_H + fraction_tick_width(histograms) + YTICK_ROOM
        right = EDGE + XLABEL_H + decades + YTICK_ROOM
        return plan_figure(rows, cols, options, (left, right, XTICKS_H + XLABEL_H + GAP), frame_at)

    # Row labels run along the row's height: names that do not fit there take two lines.
    plan = planned(1)
    names = [wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    name_lines = min(max(map(len, names)), 2)
    if name_lines > 1:
        plan = planned(name_lines)
        names = [wrap(v.name, plan.panel_h, ROW_LABEL_PT, "bold") or [""] for v in variants]
    fig, place = new_figure(plan)
    scale = fraction_scale(histograms, plan.panel_h)

    for r, analysis in enumerate(analyses):
        layers = analysis.simulation.layers
        for c, layer in enumerate(layers):  # columns past a shallower variant's depth stay blank
            panel = histogram_panel(
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
        panel = gradient_panel(
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
        lines = [fit(line, plan.panel_h, ROW_LABEL_PT, "bold") for line in names[r][:2]]
        x = EDGE + text_height(name_lines, ROW_LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            "\n".join(lines),
            rotation=90,
            ha="center",
            va="center",
            fontproperties=font_properties(ROW_LABEL_PT, "bold"),
            linespacing=LINE_SPACING,
            rotation_mode="anchor",
            parse_math=False,
        )
        x = EDGE + text_height(name_lines, ROW_LABEL_PT) + text_height(1, LABEL_PT) / 2
        fig.text(
            x / plan.width_pt,
            center,
            fit(verdicts[r], plan.panel_h, LABEL_PT),
            rotation=90,
            ha="center",
            va="center",
            fontproperties=font_properties(LABEL_PT),
            rotation_mode="anchor",
            parse_math=False,
        )

    add_title(fig, plan)
    return fig


def render_comparison(comparison: Comparison[Analysis], options: FigureOptions) -> bytes:
    """PNG or SVG bytes of :func:`build_comparison_figure`; top-level and picklable."""
    return encode(build_comparison_figure(comparison, options), options)
