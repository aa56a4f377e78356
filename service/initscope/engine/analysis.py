"""The unit of work the pool runs: simulate, measure, predict, diagnose, advise."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter

import numpy as np

from initscope import __version__
from initscope.engine import theory
from initscope.engine.activations import ActivationFn
from initscope.engine.advice import recommend
from initscope.engine.diagnosis import diagnose
from initscope.engine.floating import applies_policy
from initscope.engine.simulation import simulate
from initscope.jobs import AnalysisJob
from initscope.labels import layer_span
from initscope.results import (
    Analysis,
    GradientDecay,
    LayerPrediction,
    Meta,
    NetworkTheory,
    Simulation,
    as_float,
)

# Inline rows whose squared norms vary more than this (coefficient of variation) are too
# structured for one q^0: the theory maps each input's own q, and the mean of those is not
# the map of the mean.
_INPUT_NORM_SPREAD = 0.25


def gradient_decay(sim: Simulation) -> GradientDecay:
    """``first_to_last`` = RMS(dL/dh_1) / RMS(dL/dh_L); the per-layer factor is its geometric
    mean over the L - 1 steps between them."""
    ratio = sim.layers[0].gradients.relative_to_last
    steps = len(sim.layers) - 1
    if ratio is None:
        return GradientDecay(None, None)
    return GradientDecay(ratio, ratio ** (1 / steps) if steps else 1.0)


def _gap(measured: float | None, predicted: float) -> float | None:
    if measured is None or predicted == 0 or not math.isfinite(predicted):
        return None
    return (measured - predicted) / predicted


def _obstacles(job: AnalysisJob, sim: Simulation) -> list[str]:
    """Why the mean-field theory does not describe this network, if it does not."""
    notes = []
    weights: dict[str, list[int]] = {}
    biases: list[int] = []
    for index, spec in enumerate(job.layers, start=1):
        if not spec.init.theory_applicable:
            weights.setdefault(spec.init.scheme, []).append(index)
        if not spec.bias.theory_applicable:
            biases.append(index)
    for scheme, where in weights.items():
        notes.append(
            f"{layer_span(where)}: {scheme} weights are not i.i.d. zero-mean Gaussian-like, which "
            "the mean-field theory assumes"
        )
    if biases:
        notes.append(
            f"{layer_span(biases)}: a bias with nonzero mean shifts every pre-activation alike; "
            "the theory assumes b ~ N(0, sigma_b^2)"
        )
    notes.extend(theory.not_modelled(job.layers))
    if job.data is not None:
        with np.errstate(over="ignore", invalid="ignore"):  # huge rows: an infinite spread
            norms = np.square(np.asarray(job.data, dtype=np.float64)).mean(axis=1)
            spread = float(norms.std() / norms.mean()) if norms.mean() > 0 else math.inf
        spread = spread if math.isfinite(spread) else math.inf
        if len(job.data) > 1 and spread > _INPUT_NORM_SPREAD:
            notes.append(
                f"the inline rows' squared norms vary by {spread:.0%} (coefficient of "
                "variation): one q^0 does not describe them"
            )
    if any(x.activations.non_finite for x in sim.layers):
        notes.append("the simulation overflowed, so there is nothing finite to compare with")
    return notes


def _growth_note(activation: ActivationFn, sigma_b2: float, chi: float) -> str:
    """What the length map does when q* is infinite. For an unbounded phi, asymptotically linear
    with slopes a-, a+, ``L(q) / q -> sigma_w2 (a-^2 + a+^2) / 2``, which is also
    ``chi_1(inf)``, the chi_1 reported; for the ReLU family ``L(q) = chi_1 q + sigma_b2``."""
    relu_like = theory.correlation_gap_constant(activation) is not None or (
        activation.name == "linear"
    )
    if abs(chi - 1.0) <= 1e-12:  # sigma_w2 from a std: 2 (1 + 2e-16) is still 2
        if relu_like:
            return (
                "q* is infinite: with chi_1 = 1 the length map is q' = q + sigma_b^2, so q grows "
                f"without bound, linearly, by sigma_b^2 = {sigma_b2:.3g} per layer; gradients "
                "keep their size (chi_1 = 1 at every q), but there is no fixed point to settle at"
            )
        return (
            "q* is infinite: q grows without bound, but more slowly than geometrically (its "
            "growth factor per layer tends to 1); chi_1 = 1 is its limit as q -> inf"
        )
    if chi > 1.0:
        law = "sigma_w^2 (1 + s^2) / 2" if relu_like else "sigma_w^2 E[phi'^2] as q -> inf"
        return (
            f"q* is infinite: q grows without bound, geometrically, by a factor of "
            f"{chi:.4g} per layer once it is large ({law}); chi_1 = {chi:.4g} is that limit "
            "as q -> inf, > 1 (chaotic): gradients also grow by that factor per layer"
        )
    return (
        f"q* is infinite: q grows without bound, but more slowly than geometrically; "
        f"chi_1 = {chi:.4g} is its limit as q -> inf"
    )


def _correlation_note(activation: ActivationFn, sigma_b2: float, q_star: float, chi: float) -> str:
    """Why xi_c is unbounded: the slope at c = 1 of the normalised correlation map is 1
    (``theory.correlation_slope``; Hayou, Doucet & Rousseau 2019 for the ReLU family)."""
    head = "xi_c is unbounded here (null), and with it the trainable depth 6 xi_c: "
    gap = theory.correlation_gap_constant(activation)
    if activation.name == "linear":
        return head + (
            "a linear network maps correlations to themselves (slope 1 at c = 1), so they are "
            "preserved: there is no exponential depth scale"
        )
    if gap is not None:
        arc = (
            f"with sigma_b^2 = 0 the normalised correlation map of {activation.label} is"
            if sigma_b2 == 0.0
            else "as q grows without bound the bias fades, and the normalised correlation map of "
            f"{activation.label} tends to"
        )
        return head + (
            f"{arc} the scale-free arc-cosine map, whose slope at c = 1 is 1 for every "
            "sigma_w^2; the correlation of two inputs approaches 1 polynomially, "
            f"1 - c_l ~ {gap:.3g} / l^2 (9 pi^2 / (2 l^2) for ReLU, Hayou et al. 2019), so there "
            "is no exponential depth scale"
        )
    if q_star == 0.0:
        return head + (
            "q* = 0, so the pre-activations shrink to where phi is linear and the network is "
            "linear in the limit: the normalised correlation map's slope at c = 1 tends to 1 and "
            "correlations are preserved rather than driven to 1, with no exponential depth scale"
        )
    if math.isinf(q_star):
        return head + (
            f"q grows without bound, where {activation.label} acts like a ReLU: correlations "
            "approach 1 polynomially (~1 / l^2, Hayou et al. 2019), with no exponential depth "
            "scale"
        )
    return head + (
        f"chi_1(q*) = {chi:.4g} is 1 within rounding, the edge of chaos: no exponential depth scale"
    )


def predict(job: AnalysisJob, sim: Simulation) -> NetworkTheory:
    """Mean-field predictions beside the measurements (Poole et al. 2016; Schoenholz et al.
    2017): per layer q^l, E[h^2], chi_1(q^l) and the gradient ratio from the actual input's
    q^0 = E[x.x] / N_0, and for the network q*, chi_1(q*), the phase and depth scales of the
    most common (activation, sigma_w^2, sigma_b^2)."""
    notes = _obstacles(job, sim)
    if notes:
        return NetworkTheory(applicable=False, notes=tuple(notes))
    layers = [
        (spec.activation, x.sigma_w2, x.sigma_b2, x.units)
        for spec, x in zip(job.layers, sim.layers, strict=True)
    ]
    predicted = theory.propagate(layers, q0=sim.input_rms**2, input_dim=job.input_dim)
    previous = [sim.input_grad_rms, *(x.gradients.output_grad_rms for x in sim.layers)]
    per_layer = []
    for index, (x, p) in enumerate(zip(sim.layers, predicted, strict=True)):
        pre = x.preactivations
        measured_q = (
            pre.std**2 + pre.mean**2 if pre.std is not None and pre.mean is not None else None
        )
        rms = x.activations.rms
        below, here = previous[index], previous[index + 1]
        ratio = below / here if below is not None and here else None
        chi = x.sigma_w2 * x.mean_derivative_sq if x.mean_derivative_sq is not None else None
        per_layer.append(
            LayerPrediction(
                q=p.q,
                second_moment=p.second_moment,
                chi_1=p.chi_1,
                gradient_ratio=p.gradient_ratio,
                q_gap=_gap(measured_q, p.q),
                second_moment_gap=_gap(rms**2 if rms is not None else None, p.second_moment),
                chi_1_gap=_gap(chi, p.chi_1),
                gradient_ratio_gap=_gap(ratio, p.gradient_ratio),
            )
        )

    (activation, sigma_w2, sigma_b2, _), count = Counter(layers).most_common(1)[0]
    if count < len(layers):
        notes.append(
            f"the layers differ; q*, chi_1, the phase and depth scales are those of the most "
            f"common layer ({activation.label}, sigma_w^2 = {sigma_w2:.4g}, "
            f"sigma_b^2 = {sigma_b2:.4g})"
        )
    q_star = theory.fixed_point(activation, sigma_w2, sigma_b2)
    chi = theory.chi_1_at_fixed_point(activation, sigma_w2, sigma_b2)
    if math.isinf(q_star):
        notes.append(_growth_note(activation, sigma_b2, chi))
    xi_q, xi_c = theory.depth_scales(activation, sigma_w2, sigma_b2)
    if math.isinf(xi_q):
        notes.append("xi_q is unbounded here (null): no finite depth scale")
    if math.isinf(xi_c):
        notes.append(_correlation_note(activation, sigma_b2, q_star, chi))
    critical = theory.critical_sigma_w2(activation, sigma_b2)
    return NetworkTheory(
        applicable=True,
        notes=tuple(notes),
        q_star=as_float(q_star),
        chi_1=as_float(chi),
        phase=theory.phase(chi) if math.isfinite(chi) else None,
        phase_tolerance=theory.PHASE_TOL,
        xi_q=as_float(xi_q),
        xi_c=as_float(xi_c),
        trainable_depth=as_float(theory.trainable_depth(xi_c)),
        critical_sigma_w2=critical,
        layers=tuple(per_layer),
    )


@applies_policy
def analyze(job: AnalysisJob) -> Analysis:
    """Top-level and picklable: what the process pool runs for /analyze."""
    start = time.perf_counter()
    sim = simulate(job)
    network_theory = predict(job, sim) if job.theory else None
    diagnosis = diagnose(job, sim)
    if job.recommend:
        advice = recommend(job, sim, diagnosis, network_theory)
        diagnosis = dataclasses.replace(diagnosis, recommendation=advice)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    meta = Meta(job.seed, job.dtype, job.flops, round(elapsed_ms, 3), __version__)
    return Analysis(sim, gradient_decay(sim), diagnosis, meta, network_theory)
