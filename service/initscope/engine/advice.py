"""Advice that holds: every patch considered is simulated before it is recommended.

A recommendation is a patch in the shape of a /compare variant (:class:`Patch`: ``init``
and, where they are part of the fix, ``bias``, ``activation``, ``batch_norm``), applied to
every layer. The candidates, built from the spec alone (:func:`candidates`):

1. the textbook init for the network's activation (He for the ReLU family, LeCun for SELU
   and linear, Glorot otherwise);
2. the critical point ``(sigma_w^2, sigma_b^2)`` of mean-field theory for this activation
   and this bias, or the nearest that keeps q* away from 0 (Poole et al. 2016,
   arXiv:1606.05340; Schoenholz et al. 2017, arXiv:1611.01232;
   :func:`initscope.engine.theory.critical_point`), as i.i.d. Gaussian weights;
3. orthogonal weights at that point (Saxe et al. 2014; Pennington et al. 2017,
   arXiv:1711.04735);
4. when a bias shifts the pre-activations: the textbook init with a zero bias;
5. when there is no batch norm: batch norm before every activation (Ioffe & Szegedy 2015);
6. when every layer is sigmoid: tanh with Glorot's init (LeCun et al. 1998, "Efficient
   BackProp": a zero-centred activation keeps the next layer's inputs centred); when every
   layer is ReLU: leaky ReLU with He's init for its slope (no unit is dead on every sample);
7. LSUV (Mishkin & Matas 2016, arXiv:1511.06422), last: its rescaling passes cost most.

They are simulated in that order while the job's ``advice_budget`` (what the request's own
passes leave of the compute budget) pays for them, a candidate costing its job's
:attr:`~initscope.jobs.AnalysisJob.cost`; those it cannot pay for are named in the reason.

Each is simulated on the request's own input, seed and upstream gradient (the patched job
is what /compare builds from the same patch, so a /compare variant reproduces ``verified``),
its findings computed with the request's thresholds, and the candidates are ranked by
:func:`rank`: the mildest worst finding, then the fewest findings, then numbers well inside
the healthy range (within 10x of 1, :data:`MARGIN`) before those that merely clear the
thresholds, then the least intrusive patch, then the numbers closest to 1 (gradient
first/last, activation RMS last/first, the spread of the update ratios). When none is
healthy the recommendation says so and is the least bad, with its numbers.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from initscope.engine import activations as act
from initscope.engine import initializers as init
from initscope.engine import theory
from initscope.engine.diagnosis import SEVERITY, bias_mean, findings
from initscope.engine.simulation import simulate
from initscope.jobs import AnalysisJob, BatchNorm
from initscope.labels import layer_span
from initscope.results import (
    Advice,
    Diagnosis,
    NetworkTheory,
    Outcome,
    Patch,
    Recommendation,
    Simulation,
)

BATCH_NORM = BatchNorm()
"""The batch norm a candidate adds: before phi, gamma 1, beta 0 (the paper's and PyTorch's)."""


@dataclass(frozen=True)
class Candidate:
    """A patch to simulate, why it might help, and how much of the network it changes
    (0: the weights only, 1: and the bias, 2: adds batch norm, 3: changes the activation)."""

    patch: Patch
    why: str
    intrusion: int


def suited(activation: act.ActivationFn) -> tuple[init.WeightInit, str]:
    """The textbook initialiser for an activation, and why in one clause."""
    name = activation.name
    if name == "relu":
        return init.HeNormal(nonlinearity="relu"), (
            "He's std = sqrt(2/fan_in) makes up for the half of the signal ReLU zeroes "
            "(He et al. 2015)"
        )
    if isinstance(activation, act.LeakyReLU):
        slope = activation.negative_slope
        return init.HeNormal(negative_slope=slope, nonlinearity="leaky_relu"), (
            f"He's std = sqrt(2/((1+{slope:g}^2) fan_in)) makes up for what leaky ReLU shrinks "
            "(He et al. 2015)"
        )
    if name in ("elu", "gelu", "silu", "softplus"):
        return init.HeNormal(nonlinearity="relu"), (
            f"{name} passes positive inputs and damps negative ones like ReLU, the reason "
            "He's std = sqrt(2/fan_in) is its usual choice"
        )
    if name == "selu":
        return init.LecunNormal(), (
            "SELU self-normalises with LeCun normal weights, std = 1/sqrt(fan_in) "
            "(Klambauer et al. 2017)"
        )
    if name == "linear":
        return init.LecunNormal(), (
            "std = 1/sqrt(fan_in) preserves the signal's variance through linear layers"
        )
    return init.XavierNormal(), (
        f"Glorot's std = sqrt(2/(fan_in+fan_out)) keeps {name}'s pre-activations near unit "
        "variance (Glorot & Bengio 2010)"
    )


def patched(job: AnalysisJob, patch: Patch) -> AnalysisJob:
    """``job`` with ``patch`` applied to every layer, as a /compare variant applies it, and
    only what the findings need measured (no Jacobian, effective rank, theory or advice; one
    histogram bin, which no finding reads)."""
    layers = tuple(dataclasses.replace(spec, **patch.changes()) for spec in job.layers)
    return dataclasses.replace(
        job,
        layers=layers,
        bins=1,
        histogram_range=None,
        jacobian_samples=0,
        effective_rank=False,
        theory=False,
        recommend=False,
    )


def _common(job: AnalysisJob) -> tuple[act.ActivationFn, float]:
    """The most common activation and bias variance sigma_b^2."""
    activation = Counter(spec.activation for spec in job.layers).most_common(1)[0][0]
    sigma_b2 = Counter(spec.bias.variance() for spec in job.layers).most_common(1)[0][0]
    return activation, float(sigma_b2)


def _same_variance(a: init.WeightInit, sigma_w2: float, job: AnalysisJob) -> bool:
    """Whether ``a`` draws i.i.d. weights of variance sigma_w^2 / fan_in in every layer."""
    if not a.theory_applicable:
        return False
    return all(
        math.isclose(fan_in * a.variance(fan_in, fan_out), sigma_w2, rel_tol=1e-9)
        for fan_in, fan_out in job.fans
    )


def _draws(job: AnalysisJob, variance: Callable[[int, int], float], rel_tol: float) -> bool:
    """Whether every layer already draws i.i.d. zero-mean weights whose variance is
    ``variance(fan_in, fan_out)`` (to ``rel_tol``)."""
    return all(
        spec.init.theory_applicable
        and math.isclose(spec.init.variance(*fans), variance(*fans), rel_tol=rel_tol)
        for spec, fans in zip(job.layers, job.fans, strict=True)
    )


def _bias_for(sigma_b2: float) -> init.BiasInit:
    return init.BiasNormal(std=math.sqrt(sigma_b2)) if sigma_b2 > 0 else init.BiasZeros()


def _critical(job: AnalysisJob, activation: act.ActivationFn, sigma_b2: float) -> list[Candidate]:
    point = theory.critical_point(activation, sigma_b2)
    if point is None:
        return []
    textbook, _ = suited(activation)
    gaussian: init.WeightInit = (
        textbook
        if _same_variance(textbook, point.sigma_w2, job)
        else init.VarianceScaling(
            scale=point.sigma_w2, mode="fan_in", distribution="untruncated_normal"
        )
    )
    bias = _bias_for(point.sigma_b2)
    keeps_bias = all(  # the network's own bias already has this variance, and mean 0
        spec.bias.theory_applicable and math.isclose(spec.bias.variance(), point.sigma_b2)
        for spec in job.layers
    )
    patch_bias = None if keeps_bias else bias
    intrusion = 0 if keeps_bias else 1
    gain = math.sqrt(point.sigma_w2)
    drawn = keeps_bias and _draws(job, lambda fan_in, _: point.sigma_w2 / fan_in, 1e-9)
    gaussian_patch = Patch(init=gaussian, bias=patch_bias)
    gaussians = [] if drawn else [Candidate(gaussian_patch, point.how, intrusion)]
    return [
        *gaussians,
        Candidate(
            Patch(init=init.Orthogonal(gain=gain), bias=patch_bias),
            f"orthogonal weights at that point (gain = sqrt({point.sigma_w2:.4g}) = {gain:.4g}) "
            "keep every singular value of W equal, which Gaussian weights do not "
            "(Saxe et al. 2014; Pennington et al. 2017)",
            intrusion,
        ),
    ]


def candidates(job: AnalysisJob) -> list[Candidate]:
    """Every patch worth simulating for this network, distinct, none a no-op."""
    activation, sigma_b2 = _common(job)
    textbook, why = suited(activation)
    drawn = _draws(job, textbook.variance, 0.05)
    out = [] if drawn else [Candidate(Patch(init=textbook), why, 0)]
    out += _critical(job, activation, sigma_b2)
    if any(bias_mean(spec) != 0.0 for spec in job.layers):
        out.append(
            Candidate(
                Patch(init=textbook, bias=init.BiasZeros()),
                f"a zero bias stops shifting every pre-activation to one side; {why}",
                1,
            )
        )
    if all(spec.batch_norm is None for spec in job.layers):
        out.append(
            Candidate(
                Patch(batch_norm=BATCH_NORM),
                "batch norm before phi gives every unit's input mean 0 and std 1 over the "
                "batch, whatever the weights' scale and the bias (Ioffe & Szegedy 2015)",
                2,
            )
        )
    if all(isinstance(spec.activation, act.Sigmoid) for spec in job.layers):
        out.append(
            Candidate(
                Patch(activation=act.Tanh(), init=init.XavierNormal()),
                "no weight scale fixes sigmoid at depth: its phi' is at most 0.25 and its "
                "outputs have mean 1/2, which shifts every next layer; tanh = 2 sigmoid(2a) - 1 "
                "is its zero-centred rescaling (LeCun et al. 1998), with Glorot's init",
                3,
            )
        )
    if all(isinstance(spec.activation, act.ReLU) for spec in job.layers):
        leaky = act.LeakyReLU()
        slope = leaky.negative_slope
        out.append(
            Candidate(
                Patch(
                    activation=leaky,
                    init=init.HeNormal(negative_slope=slope, nonlinearity="leaky_relu"),
                ),
                f"leaky ReLU passes gradient {slope:g}x below 0, so no unit is dead for every "
                "sample (Maas et al. 2013), with He's init for its slope",
                3,
            )
        )
    out.append(
        Candidate(
            Patch(init=init.Lsuv()),
            "LSUV rescales each orthogonal layer until its pre-activations have unit variance "
            "on this data (Mishkin & Matas 2016)",
            0,
        )
    )
    distinct: list[Candidate] = []
    seen = {job.layers}
    for candidate in out:
        layers = patched(job, candidate.patch).layers
        if layers not in seen:
            seen.add(layers)
            distinct.append(candidate)
    return distinct


def outcome(sim: Simulation, verdict: str, codes: tuple[str, ...]) -> Outcome:
    layers = sim.layers
    first, last = layers[0].activations.rms, layers[-1].activations.rms
    ratios = [x.gradients.update_ratio for x in layers]
    known = [r for r in ratios if r is not None]
    return Outcome(
        verdict=verdict,
        findings=codes,  # type: ignore[arg-type]  # codes come from findings()
        first_to_last=layers[0].gradients.relative_to_last,
        last_to_first_rms=last / first if first and last is not None else None,
        update_ratio=(min(known), max(known)) if len(known) == len(ratios) and known else None,
    )


def verify(job: AnalysisJob, patch: Patch) -> Outcome:
    """Simulate ``patch`` on ``job``'s input, seed and upstream gradient; what it did."""
    variant = patched(job, patch)
    sim = simulate(variant)
    found = findings(variant, sim)
    codes = tuple(f.code for f in found)
    return outcome(sim, codes[0] if codes else "healthy", codes)


def _log_distance(value: float | None) -> float:
    return abs(math.log10(value)) if value is not None and value > 0 else math.inf


MARGIN = 1.0
"""Decades: an outcome is well inside the healthy range when its gradient ratio first/last
and activation RMS ratio last/first are within 10x of 1 and its update ratios within 10x of
each other; one that merely clears the 100x thresholds ranks after it."""


def rank(result: Outcome, intrusion: int) -> tuple[int, int, bool, int, float]:
    """Sort key, best first: the mildest worst finding (healthy best), the fewest findings,
    numbers well inside the healthy range (:data:`MARGIN`), the least intrusive patch, then
    the distance from 1, ``|log10 first_to_last| + |log10 last_to_first_rms| +
    log10(largest / smallest update ratio)``."""
    worst = min((SEVERITY.index(c) for c in result.findings), default=len(SEVERITY))
    spread = (
        math.log10(result.update_ratio[1] / result.update_ratio[0])
        if result.update_ratio is not None and result.update_ratio[0] > 0
        else math.inf
    )
    gradient = _log_distance(result.first_to_last)
    signal = _log_distance(result.last_to_first_rms)
    inside = max(gradient, signal, spread) <= MARGIN
    return (-worst, len(result.findings), not inside, intrusion, gradient + signal + spread)


def describe(patch: Patch) -> str:
    """A patch in a few words: ``orthogonal(gain=1.33) with bias N(0, 0.224^2)``."""
    parts = []
    if patch.activation is not None:
        parts.append(patch.activation.label)
    if patch.init is not None:
        parts.append(_init_words(patch.init))
    if patch.bias is not None:
        bias = patch.bias
        parts.append(
            f"bias N(0, {bias.std:.4g}^2)"
            if isinstance(bias, init.BiasNormal) and bias.mean == 0
            else "a zero bias"
            if isinstance(bias, init.BiasZeros)
            else f"bias {bias.scheme}"
        )
    if patch.batch_norm is not None:
        parts.append("batch norm before phi")
    return " with ".join(parts) if parts else "no change"


def _init_words(weights: init.WeightInit) -> str:
    if isinstance(weights, init.VarianceScaling):
        return f"normal weights of variance {weights.scale:.4g} / fan_in"
    if isinstance(weights, init.Orthogonal):
        return f"orthogonal(gain={weights.gain:.4g})"
    return weights.scheme


def summary(result: Outcome, verb: str = "still shows") -> str:
    """What a simulation showed, in numbers."""
    state = "healthy" if not result.findings else f"{verb} {', '.join(result.findings)}"
    numbers = []
    if result.first_to_last is not None:
        numbers.append(f"layer 1 receives {result.first_to_last:.3g}x the last layer's gradient")
    if result.last_to_first_rms is not None:
        numbers.append(f"activation RMS last/first {result.last_to_first_rms:.3g}")
    if result.update_ratio is not None:
        low, high = result.update_ratio
        numbers.append(f"update ratios ||dW||/||W|| {low:.2g} to {high:.2g}")
    return state + (f" ({'; '.join(numbers)})" if numbers else "")


def _depth_note(network_theory: NetworkTheory | None, depth: int) -> str:
    """What mean-field theory says about this depth, when the network is deeper than about
    6 xi_c (Schoenholz et al. 2017)."""
    if network_theory is None or not network_theory.applicable:
        return ""
    limit, xi, chi = (
        network_theory.trainable_depth,
        network_theory.xi_c,
        network_theory.chi_1,
    )
    if limit is None or xi is None or chi is None or depth <= limit:
        return ""
    towards = (
        "inputs' correlations approach 1 (different inputs look alike)"
        if chi < 1
        else "inputs decorrelate (nearby inputs end up unrelated)"
    )
    return (
        f" Mean-field theory: at chi_1 = {chi:.3g} the {towards} over xi_c = {xi:.3g} layers; "
        f"these {depth} layers exceed the trainable depth of about 6 xi_c = {limit:.3g} "
        "(Schoenholz et al. 2017)."
    )


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


def recommend(
    job: AnalysisJob,
    sim: Simulation,
    diagnosis: Diagnosis,
    network_theory: NetworkTheory | None = None,
) -> Recommendation:
    """The best verified patch for ``job``, with the runners-up; keep the network when no
    finding was raised (then ``verified`` is this network's own outcome)."""
    codes = tuple(f.code for f in diagnosis.findings)
    current = outcome(sim, diagnosis.verdict, codes)
    activation, _ = _common(job)
    if not codes:
        textbook, why = suited(activation)
        note = (
            "it is the textbook choice"
            if _draws(job, textbook.variance, 0.05)
            else f"the textbook choice for {activation.name} would be {textbook.scheme}: {why}"
        )
        return Recommendation(
            reason=f"Keep it: no finding was raised, {summary(current)}; {note}."
            + _batch_norm_note(job),
            verified=current,
        )
    tried = []
    skipped = []
    remaining = job.advice_budget
    for candidate in candidates(job):
        cost = patched(job, candidate.patch).cost
        if cost > remaining:
            skipped.append(describe(candidate.patch))
            continue
        remaining -= cost
        result = verify(job, candidate.patch)
        tried.append((rank(result, candidate.intrusion), candidate, result))
    unpaid = f" Not simulated, over the compute budget: {'; '.join(skipped)}." if skipped else ""
    if not tried:
        why = (
            f"what the compute budget leaves ({job.advice_budget:.3g} multiply-adds) pays for "
            f"none of the patches: {'; '.join(skipped)}"
            if skipped
            else "every patch considered is what this network already is"
        )
        return Recommendation(
            reason=f"No patch was simulated: {why}; this network {summary(current, 'shows')}.",
            verified=current,
        )
    tried.sort(key=lambda entry: entry[0])
    advice = [
        Advice(
            **c.patch.changes(),
            reason=f"{describe(c.patch)}: {c.why.rstrip('.')}. Simulated: {summary(r)}.",
            verified=r,
        )
        for _, c, r in tried
    ]
    best_key, best, result = tried[0]
    here = f"this network {summary(current, 'shows')}"
    depth = _depth_note(network_theory, len(job.layers))
    if not result.findings:
        head = f"Use {describe(best.patch)}: {best.why.rstrip('.')}."
        tail = (
            " Simulated on this request's input, seed and upstream gradient it is "
            f"{summary(result)}; {here}."
        )
    elif best_key < rank(current, 0):
        head = (
            f"None of the {len(tried)} patches tried makes this network healthy; the least "
            f"bad is {describe(best.patch)}: {best.why.rstrip('.')}."
        )
        tail = f" Simulated it {summary(result)}; {here}."
    else:
        head = (
            f"None of the {len(tried)} patches tried improves on this network, which "
            f"{summary(current, 'shows')}; the closest is {describe(best.patch)}: "
            f"{best.why.rstrip('.')}."
        )
        tail = f" Simulated it {summary(result)}."
    return Recommendation(
        **best.patch.changes(),
        reason=head + tail + depth + _batch_norm_note(job) + unpaid,
        verified=result,
        alternatives=tuple(advice[1:]),
    )
