"""From measurements to findings and a verdict.

Each finding compares one measured number with one documented threshold
(:class:`initscope.jobs.Thresholds`) and states its cause in the measured numbers: the bias
that shifts the pre-activations, the per-layer factor a gradient is multiplied by, the
correlation the samples' pre-activations have reached. The verdict is the most severe
finding. What to do about them is :mod:`initscope.engine.advice`'s, which simulates every
patch it considers before recommending one.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import get_args

from initscope.engine import activations as act
from initscope.engine import initializers as init
from initscope.jobs import AnalysisJob, LayerSpec, Thresholds
from initscope.results import Diagnosis, Finding, FindingCode, LayerResult, Simulation

SEVERITY: tuple[FindingCode, ...] = get_args(FindingCode)
"""Finding codes, most severe first."""

CORRELATED = 0.5
"""Dead units are blamed on correlated samples above this mean sample correlation of the
pre-activations: with z_i = sqrt(c) g + sqrt(1 - c) e_i per unit (g shared, e_i per sample),
a unit is negative on all of n samples once g < -sqrt((1 - c) / c) max_i e_i, which at
c = 0.5 and n = 512 (max e ~ 3) already happens for 0.1 % of units, at c = 0.8 for 7 %."""


def _layers(layers: Iterable[LayerResult], test: Callable[[LayerResult], bool]) -> tuple[int, ...]:
    return tuple(layer.index for layer in layers if test(layer))


def _outside(
    values: dict[int, float | None], low: float, high: float
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The layers whose value is below ``low``, and those above ``high`` (None: no value)."""
    known = {i: v for i, v in values.items() if v is not None}
    below = tuple(i for i, v in known.items() if v < low)
    above = tuple(i for i, v in known.items() if v > high)
    return below, above


def _ratio(value: float | None, reference: float | None) -> float | None:
    if value is None or reference is None or reference <= 0:
        return None
    return value / reference


def _g(value: float | None) -> str:
    """A measured number for a message; None (no finite value) said as such."""
    return "not finite" if value is None else f"{value:.3g}"


def _per_step(ratio: float | None, steps: int) -> float | None:
    """The geometric-mean factor per layer of a ratio over ``steps`` layers."""
    if ratio is None or ratio <= 0 or steps <= 0 or not math.isfinite(ratio):
        return None
    return float(ratio ** (1.0 / steps))


def bias_mean(spec: LayerSpec) -> float:
    """The mean of the layer's bias draws (a constant's value)."""
    bias = spec.bias
    if isinstance(bias, init.BiasConstant):
        return bias.value
    if isinstance(bias, init.BiasNormal):
        return bias.mean
    return 0.0


def _filled(spec: LayerSpec) -> bool:
    return isinstance(spec.init, init.Constant | init.Zeros | init.Ones)


def _chi_clause(layers: Iterable[LayerResult], normalised: bool) -> str:
    """``chi_1`` measured: sigma_w^2 E[phi'(z)^2], averaged over the layers (Poole et al. 2016,
    arXiv:1606.05340: the per-layer factor of the mean squared gradient)."""
    terms = [(x.sigma_w2, x.mean_derivative_sq) for x in layers if x.mean_derivative_sq is not None]
    if normalised or not terms:
        return ""
    sigma_w2 = sum(t[0] for t in terms) / len(terms)
    slope = sum(t[1] for t in terms) / len(terms)
    return (
        f"; measured sigma_w^2 E[phi'(z)^2] = {sigma_w2:.3g} x {slope:.3g} = "
        f"{sigma_w2 * slope:.3g} per layer (chi_1)"
    )


def findings(job: AnalysisJob, sim: Simulation) -> list[Finding]:
    t: Thresholds = job.thresholds
    layers = sim.layers
    by_index = {layer.index: layer for layer in layers}
    specs = dict(enumerate(job.layers, start=1))
    normalised = any(spec.batch_norm is not None for spec in job.layers)
    found: list[Finding] = []

    def add(code: FindingCode, hit: tuple[int, ...], message: str) -> None:
        if hit:
            found.append(Finding(code, hit, message))

    bad = _layers(
        layers,
        lambda x: x.activations.non_finite > 0 or x.gradients.output_grad_rms is None,
    )
    if bad:
        first = by_index[bad[0]]
        trend = ""
        if bad[0] > 1:
            before = by_index[bad[0] - 1].activations.rms
            factor = _per_step(_ratio(before, sim.input_rms), bad[0] - 1)
            if factor is not None:
                trend = f"; before it the activation RMS grows x{factor:.3g} per layer"
        add(
            "non_finite",
            bad,
            f"values overflow to inf/NaN from layer {bad[0]} "
            f"({first.activations.non_finite} non-finite activations there, in {job.dtype}, "
            f"sigma_w^2 = {first.sigma_w2:.3g}){trend}: the weights are far too large for "
            "this depth",
        )

    def duplicated(x: LayerResult) -> bool:
        live = x.units - x.dead_units
        if x.distinct_units is None or live <= 1:
            return False
        return (live - x.distinct_units) / live > t.symmetric_unit_fraction

    hit = _layers(layers, duplicated)
    if hit:
        x = by_index[hit[0]]
        spec = specs[x.index]
        head = (
            f"layer {x.index}'s {x.units - x.dead_units} live units compute only "
            f"{x.distinct_units} distinct function(s)"
        )
        if _filled(spec):
            cause = (
                f": identical weights ({spec.init.scheme}) make units identical, and gradient "
                "descent cannot break the symmetry"
            )
        else:
            c = x.sample_correlation
            values = (
                f"its values have all underflowed to 0 in {job.dtype}"
                if x.activations.std == 0 and x.activations.mean == 0
                else f"its values vary by std {_g(x.activations.std)} around "
                f"{_g(x.activations.mean)}"
            )
            cause = (
                f": the signal has collapsed there, {values}"
                + (f", the samples' pre-activations are correlated {c:.4f}" if c else "")
                + ", so the units' outputs no longer differ beyond rounding"
            )
        add("symmetric_units", hit, head + cause)

    gradient = {x.index: x.gradients.relative_to_last for x in layers}
    last_update = layers[-1].gradients.update_ratio
    update = {x.index: _ratio(x.gradients.update_ratio, last_update) for x in layers}
    low, high = t.vanishing_gradient_ratio, t.exploding_gradient_ratio
    g_below, g_above = _outside(gradient, low, high)
    u_below, u_above = _outside(update, low, high)
    chi = _chi_clause(layers, normalised)

    def gradient_message(kind: str, g_hit: tuple[int, ...], u_hit: tuple[int, ...]) -> str:
        parts = []
        if g_hit:
            i = g_hit[0]
            factor = _per_step(gradient[i], len(layers) - i)
            threshold = low if kind == "vanishing" else high
            parts.append(
                (
                    f"the output-gradient RMS at layer {i} is {gradient[i]:.3g}x the last "
                    f"layer's (threshold {threshold:g}x)"
                    if gradient[i]
                    else f"no gradient reaches layer {i} (its output-gradient RMS is 0)"
                )
                + (f", a factor x{factor:.3g} per layer" if factor is not None else "")
                + chi
            )
        if u_hit:
            i = u_hit[0]
            mine, last = by_index[i].gradients.update_ratio, last_update
            parts.append(
                f"layer {i}'s weights get an update ||dW|| / ||W|| of {mine:.3g} against "
                f"{last:.3g} at the last layer ({update[i]:.3g}x): one learning rate cannot "
                "suit both"
            )
        return "; ".join(parts)

    above = tuple(sorted(set(g_above) | set(u_above)))
    below = tuple(sorted(set(g_below) | set(u_below)))
    if above:
        add("exploding_gradients", above, gradient_message("exploding", g_above, u_above))
    if below:
        add("vanishing_gradients", below, gradient_message("vanishing", g_below, u_below))

    growth = {x.index: _ratio(x.activations.rms, sim.input_rms) for x in layers}
    a_below, a_above = _outside(growth, t.vanishing_activation_ratio, t.exploding_activation_ratio)
    if a_above:  # the worst is the deepest layer
        i = a_above[-1]
        factor = _per_step(growth[i], i)
        add(
            "exploding_activations",
            a_above,
            f"the activation RMS grows to {growth[i]:.3g}x the input's by layer {i} "
            f"(threshold {t.exploding_activation_ratio:g}x)"
            + (f", x{factor:.3g} per layer" if factor is not None else ""),
        )
    if a_below:
        i = a_below[-1]
        factor = _per_step(growth[i], i)
        add(
            "vanishing_activations",
            a_below,
            f"the activation RMS shrinks to {growth[i]:.3g} of the input's by layer {i} "
            f"(threshold {t.vanishing_activation_ratio:g})"
            + (f", x{factor:.3g} per layer" if factor is not None else ""),
        )

    hit = _layers(layers, lambda x: x.dead_units / x.units > t.dead_unit_fraction)
    if hit:
        x = max((by_index[i] for i in hit), key=lambda x: x.dead_units / x.units)
        add("dead_units", hit, _dead_message(x, specs[x.index], sim.samples))

    hit = _layers(
        layers,
        lambda x: (s := x.activations.saturated_fraction) is not None and s > t.saturated_fraction,
    )
    if hit:
        x = max((by_index[i] for i in hit), key=lambda x: x.activations.saturated_fraction or 0)
        message = (
            f"{x.activations.saturated_fraction:.0%} of layer {x.index}'s values sit in the flat "
            f"tails of {x.activation} (phi' below {t.saturation_derivative:g} of its maximum): "
            f"its input z has std {_g(x.preactivations.std)} around {_g(x.preactivations.mean)}"
        )
        to_first = layers[0].gradients.relative_to_last
        if not (g_below or g_above) and to_first is not None:
            # Saturated, yet no gradient finding: say so, or the reader assumes it vanishes.
            offset = "offset" if to_first <= 1 else "more than offset"
            cause = "batch norm's gain gamma/sigma" if normalised else "the large weights"
            message += (
                f" (the gradient is not vanishing: layer 1 receives {to_first:.2g}x the last "
                f"layer's gradient RMS, because {cause} {offset} the small phi')"
            )
        add("saturation", hit, message)

    def spread(x: LayerResult, fn: act.ActivationFn) -> float | None:
        after = x.batch_norm is not None and x.batch_norm.placement == "after"
        if not fn.bounded or after or x.activations.std is None:
            return None  # batch norm after phi: the output is not in phi's range
        low_, high_ = fn.natural_range
        return x.activations.std / (high_ - low_)

    hit = _layers(
        layers,
        lambda x: (
            (s := spread(x, specs[x.index].activation)) is not None and s < t.concentrated_std
        ),
    )
    if hit:
        x = by_index[hit[-1]]
        fn = specs[x.index].activation
        share = spread(x, fn) or 0.0
        z = x.preactivations.std
        where = (
            f"{fn.name} is nearly linear there, so these layers add little nonlinearity"
            if z is not None and z < 0.5
            else f"{fn.name} is pinned in a flat tail"
        )
        add(
            "concentrated_activations",
            hit,
            f"layer {x.index}'s activations barely vary: std {_g(x.activations.std)}, "
            f"{share:.1%} of {fn.name}'s output range, around {_g(x.activations.mean)}, "
            f"because its input z has std {_g(z)}: {where}",
        )
    found.sort(key=lambda f: SEVERITY.index(f.code))
    return found


def _dead_message(x: LayerResult, spec: LayerSpec, samples: int) -> str:
    """Dead units, with the cause the numbers show: a bias that shifts every pre-activation
    to one side, or samples so correlated that a unit negative for one is negative for all
    (ReLU networks on the edge of chaos drive the correlation to 1 with depth, polynomially:
    Hayou, Doucet & Rousseau 2019, arXiv:1902.06853)."""
    head = (
        f"{x.dead_units} of layer {x.index}'s {x.units} units have phi'(z) = 0 on all "
        f"{samples} samples, so no gradient reaches their weights"
    )
    shift = bias_mean(spec)
    mean, std = x.preactivations.mean, x.preactivations.std
    if shift != 0.0 and mean is not None and std is not None and abs(mean) > std:
        kind = "constant bias" if isinstance(spec.bias, init.BiasConstant) else "bias of mean"
        side = "below" if mean < 0 else "above"
        return (
            f"{head}: the {kind} {shift:g} puts layer {x.index}'s pre-activations at mean "
            f"{mean:.3g} with std {std:.3g}, {side} 0 for {x.activations.zero_fraction:.0%} of "
            "its values; a zero bias (or batch norm before phi) brings them back"
        )
    c = x.sample_correlation
    if c is not None and c > CORRELATED:
        return (
            f"{head}: the samples' pre-activations there are correlated {c:.3f} (mean cosine), "
            "so a unit that is negative for one sample is often negative for all; ReLU-like "
            "networks drive this correlation towards 1 with depth (Hayou et al. 2019). Batch "
            "norm before phi re-centres every unit over the batch, and leaky ReLU passes "
            "gradient below 0"
        )
    return head


def diagnose(job: AnalysisJob, sim: Simulation) -> Diagnosis:
    """The findings, most severe first, and the verdict; no recommendation
    (:func:`initscope.engine.advice.recommend` adds it)."""
    found = findings(job, sim)
    return Diagnosis(found[0].code if found else "healthy", tuple(found), None)
