"""From measurements to findings, a verdict and a recommended initialiser.

Each finding compares one measured number with one documented threshold
(:class:`initscope.jobs.Thresholds`); the verdict is the most severe finding. The
recommendation states what the numbers show and never claims more: sigmoid with std 1 is
saturated, yet its backpropagated gradient hardly decays, and the reason says both.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Callable, Iterable
from typing import get_args

from initscope.engine import activations as act
from initscope.engine import initializers as init
from initscope.engine import theory
from initscope.jobs import AnalysisJob, Thresholds
from initscope.labels import layer_span
from initscope.results import (
    Diagnosis,
    Finding,
    FindingCode,
    LayerResult,
    NetworkTheory,
    Recommendation,
    Simulation,
)

SEVERITY: tuple[FindingCode, ...] = get_args(FindingCode)
"""Finding codes, most severe first."""


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


def _ratio(value: float | None, reference: float) -> float | None:
    return None if value is None or reference <= 0 else value / reference


def findings(job: AnalysisJob, sim: Simulation) -> list[Finding]:
    t: Thresholds = job.thresholds
    layers = sim.layers
    by_index = {layer.index: layer for layer in layers}
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
        add(
            "non_finite",
            bad,
            f"values overflow to inf/NaN from layer {bad[0]} "
            f"({first.activations.non_finite} non-finite activations there, in {job.dtype}); "
            "the weights are far too large for this depth",
        )

    def duplicated(x: LayerResult) -> bool:
        live = x.units - x.dead_units
        if x.distinct_units is None or live <= 1:
            return False
        return (live - x.distinct_units) / live > t.symmetric_unit_fraction

    hit = _layers(layers, duplicated)
    if hit:
        x = by_index[hit[0]]
        add(
            "symmetric_units",
            hit,
            f"layer {x.index}'s {x.units - x.dead_units} live units compute only "
            f"{x.distinct_units} distinct function(s): identical weights make units identical, "
            "and gradient descent cannot break the symmetry",
        )

    gradient = {x.index: x.gradients.relative_to_last for x in layers}
    below, above = _outside(gradient, t.vanishing_gradient_ratio, t.exploding_gradient_ratio)
    if above:  # the worst is the first layer, furthest from the last
        add(
            "exploding_gradients",
            above,
            f"the output-gradient RMS at layer {above[0]} is {gradient[above[0]]:.3g}x the last "
            f"layer's (threshold {t.exploding_gradient_ratio:g}x)",
        )
    if below:
        add(
            "vanishing_gradients",
            below,
            f"the output-gradient RMS at layer {below[0]} is {gradient[below[0]]:.3g} of the "
            f"last layer's (threshold {t.vanishing_gradient_ratio:g})",
        )

    growth = {x.index: _ratio(x.activations.rms, sim.input_rms) for x in layers}
    below, above = _outside(growth, t.vanishing_activation_ratio, t.exploding_activation_ratio)
    if above:  # the worst is the deepest layer
        add(
            "exploding_activations",
            above,
            f"the activation RMS grows to {growth[above[-1]]:.3g}x the input's by layer "
            f"{above[-1]} (threshold {t.exploding_activation_ratio:g}x)",
        )
    if below:
        add(
            "vanishing_activations",
            below,
            f"the activation RMS shrinks to {growth[below[-1]]:.3g} of the input's by layer "
            f"{below[-1]} (threshold {t.vanishing_activation_ratio:g})",
        )

    hit = _layers(layers, lambda x: x.dead_units / x.units > t.dead_unit_fraction)
    if hit:
        x = max((by_index[i] for i in hit), key=lambda x: x.dead_units / x.units)
        add(
            "dead_units",
            hit,
            f"{x.dead_units} of layer {x.index}'s {x.units} units have phi'(a) = 0 on every "
            "sample: no gradient reaches their weights",
        )

    hit = _layers(
        layers,
        lambda x: (s := x.activations.saturated_fraction) is not None and s > t.saturated_fraction,
    )
    if hit:
        x = max((by_index[i] for i in hit), key=lambda x: x.activations.saturated_fraction or 0)
        add(
            "saturation",
            hit,
            f"{x.activations.saturated_fraction:.0%} of layer {x.index}'s values sit in the flat "
            f"tails of {x.activation} (phi' below {t.saturation_derivative:g} of its maximum)",
        )

    def spread(x: LayerResult, spec_activation: act.ActivationFn) -> float | None:
        after = x.batch_norm is not None and x.batch_norm.placement == "after"
        if not spec_activation.bounded or after or x.activations.std is None:
            return None  # batch norm after phi: the output is not in phi's range
        low, high = spec_activation.natural_range
        return x.activations.std / (high - low)

    specs = {i: spec.activation for i, spec in enumerate(job.layers, start=1)}
    hit = _layers(
        layers,
        lambda x: (s := spread(x, specs[x.index])) is not None and s < t.concentrated_std,
    )
    if hit:
        x = by_index[hit[-1]]
        add(
            "concentrated_activations",
            hit,
            f"layer {x.index}'s activations barely vary (std {x.activations.std:.3g} around "
            f"{x.activations.mean:.3g}): the units respond almost alike, which limits what the "
            "network can express",
        )
    found.sort(key=lambda f: SEVERITY.index(f.code))
    return found


def _suited(activation: act.ActivationFn) -> tuple[init.WeightInit, str]:
    """The initialiser suited to an activation, and why in one clause."""
    name = activation.name
    if name == "relu":
        return init.HeNormal(nonlinearity="relu"), (
            "He's std = sqrt(2/fan_in) makes up for the half of the signal ReLU zeroes, "
            "so the activation scale stays constant with depth"
        )
    if isinstance(activation, act.LeakyReLU):
        slope = activation.negative_slope
        return init.HeNormal(negative_slope=slope, nonlinearity="leaky_relu"), (
            f"He's std = sqrt(2/((1+{slope:g}^2) fan_in)) makes up for what leaky ReLU shrinks, "
            "so the activation scale stays constant with depth"
        )
    if name in ("elu", "gelu", "silu", "softplus"):
        return init.HeNormal(nonlinearity="relu"), (
            f"{name} passes positive inputs and damps negative ones like ReLU, so He's "
            "std = sqrt(2/fan_in) keeps the activation scale close to constant with depth"
        )
    if name == "selu":
        return init.LecunNormal(), (
            "SELU self-normalises only with LeCun normal weights, std = 1/sqrt(fan_in) "
            "(Klambauer et al. 2017)"
        )
    if name == "linear":
        return init.LecunNormal(), (
            "std = 1/sqrt(fan_in) preserves the signal's variance through linear layers"
        )
    return init.XavierNormal(), (
        f"Glorot's std = sqrt(2/(fan_in+fan_out)) keeps {name}'s pre-activations near unit "
        "variance, between the flat tails and the nearly constant centre"
    )


def _matches(job: AnalysisJob, suggestion: init.WeightInit) -> bool:
    """Whether every layer already draws i.i.d. weights with the suggested variance (5 %)."""
    for spec, (fan_in, fan_out) in zip(job.layers, job.fans, strict=True):
        if not spec.init.theory_applicable:
            return False
        mine = spec.init.variance(fan_in, fan_out)
        wanted = suggestion.variance(fan_in, fan_out)
        if abs(mine - wanted) > 0.05 * wanted:
            return False
    return True


def _per_layer(first: float | None, last: float | None, steps: int) -> float | None:
    if first is None or last is None or first <= 0 or steps == 0:
        return None
    return float((last / first) ** (1 / steps))


def _edge_of_chaos(activation: act.ActivationFn, sigma_b2: float, sigma_w2: float) -> str:
    """The sigma_w^2 that puts chi_1(q*) at 1 for this activation and bias, or how near one
    gets (Poole et al. 2016; Schoenholz et al. 2017); ``sigma_w2`` is the network's own."""
    critical = theory.critical_sigma_w2(activation, sigma_b2)
    if critical is not None:
        where = (
            f"this network's sigma_w^2 = {sigma_w2:.4g} is on it"
            if abs(sigma_w2 - critical) <= 0.02 * critical
            else f"i.e. std = sqrt({critical:.4g} / fan_in)"
        )
        return (
            f"Mean-field theory: with sigma_b^2 = {sigma_b2:.3g}, chi_1 = 1 (the edge of chaos) "
            f"at sigma_w^2 = {critical:.4g}; {where}."
        )
    nearest, chi = theory.nearest_to_critical(activation, sigma_b2)
    return (
        f"Mean-field theory: with sigma_b^2 = {sigma_b2:.3g}, no sigma_w^2 in [0.1, 100] puts "
        f"{activation.name} at chi_1 = 1; the nearest is sigma_w^2 = {nearest:.4g} with "
        f"chi_1 = {chi:.3g}."
    )


def recommend(job: AnalysisJob, sim: Simulation, found: list[Finding]) -> Recommendation:
    """The init suited to the network's most common activation, with the measured evidence.

    Three cases: the current init already matches the suggestion (then say what remains and
    why the weight scale cannot fix it); it does not match and findings were raised (name the
    worst); it does not match and nothing was raised (keep it, but say what the measurements
    show the suggestion would change).
    """
    activation = Counter(spec.activation for spec in job.layers).most_common(1)[0][0]
    suggestion, why = _suited(activation)
    codes = [f.code for f in found]
    to_first = sim.layers[0].gradients.relative_to_last
    steps = len(sim.layers) - 1
    rms_factor = _per_layer(sim.layers[0].activations.rms, sim.layers[-1].activations.rms, steps)
    normalised = any(spec.batch_norm is not None for spec in job.layers)

    if _matches(job, suggestion):
        if not found:
            return Recommendation(suggestion, f"Keep it: {why}, and no finding was raised.")
        reason = (
            f"This is already the textbook choice: {why}; at this scale the network still "
            f"shows {', '.join(codes)}"
        )
        if "vanishing_gradients" in codes and activation.name == "sigmoid":
            reason += (
                " (sigmoid's phi' is at most 0.25, so with zero bias no weight scale keeps the "
                "gradient from shrinking; tanh or ReLU with He train deeper)"
            )
        return Recommendation(suggestion, reason + ".")

    if not found:
        reason = f"No finding was raised, so the current init is workable; {suggestion.scheme} is "
        reason += f"the textbook choice for {activation.name}: {why}"
        if rms_factor is not None and steps:
            reason += f" (here the activation RMS changes by x{rms_factor:.2f} per layer)"
        return Recommendation(suggestion, reason + ".")

    reason = f"Use {suggestion.scheme}: {why}; here {found[0].message}"
    if found[0].code == "saturation" and to_first is not None:
        # Saturated, yet no gradient finding: say so, or the reader assumes the gradient vanishes.
        offset = "offset" if to_first <= 1 else "more than offset"
        cause = "batch norm's gain gamma/sigma" if normalised else "the large weights"
        reason += (
            f" (the gradient is not vanishing: layer 1 receives {to_first:.2g}x the last layer's "
            f"gradient RMS, because {cause} {offset} the small phi')"
        )
    return Recommendation(suggestion, reason + ".")


def _batch_norm_note(job: AnalysisJob) -> str:
    """What batch norm before phi does to the advice: the weight scale no longer matters."""
    before = [
        i
        for i, spec in enumerate(job.layers, start=1)
        if spec.batch_norm is not None and spec.batch_norm.placement == "before"
    ]
    if not before:
        return ""
    where = "every layer" if len(before) == len(job.layers) else layer_span(before)
    return (
        f" Batch norm before the activation in {where} gives phi inputs of mean beta and std "
        "|gamma| whatever the weights' scale, so there the init changes the forward pass little."
    )


def diagnose(
    job: AnalysisJob, sim: Simulation, network_theory: NetworkTheory | None = None
) -> Diagnosis:
    found = findings(job, sim)
    verdict = found[0].code if found else "healthy"
    recommendation = recommend(job, sim, found)
    note = _batch_norm_note(job)
    if note:
        recommendation = dataclasses.replace(recommendation, reason=recommendation.reason + note)
    if network_theory is not None and network_theory.applicable:
        activation = Counter(spec.activation for spec in job.layers).most_common(1)[0][0]
        sigma_w2, sigma_b2 = Counter((x.sigma_w2, x.sigma_b2) for x in sim.layers).most_common(1)[
            0
        ][0]
        reason = f"{recommendation.reason} {_edge_of_chaos(activation, sigma_b2, sigma_w2)}"
        depth = network_theory.trainable_depth
        if depth is not None and len(job.layers) > depth:
            reason += (
                f" At chi_1 = {network_theory.chi_1:.3g} signals decorrelate over xi_c = "
                f"{network_theory.xi_c:.3g} layers: these {len(job.layers)} layers exceed the "
                f"trainable depth of about 6 xi_c = {depth:.3g} (Schoenholz et al. 2017)."
            )
        recommendation = dataclasses.replace(recommendation, reason=reason)
    return Diagnosis(verdict, tuple(found), recommendation)
