"""Chapter 6 of "Deep Learning from Scratch", reproduced: 5 layers of 100 units, 1000 samples of
x ~ N(0, 1), no bias; weights with std 1, std 0.01, 1/sqrt(n) (the book's "Xavier") and
sqrt(2/n) (He), for sigmoid, tanh and ReLU. The bounds encode the shapes the book shows and
the mean-field expectations of ../shared/SCIENCE.md; tolerances cover finite-width noise.
"""

from __future__ import annotations

import itertools
from functools import cache

import numpy as np
import pytest
from initscope.engine.analysis import analyze
from initscope.results import Advice, Analysis, LayerResult, Outcome

from tests.helpers import book_job


@cache
def run(activation: str, init: str) -> Analysis:
    return analyze(book_job(activation, init))


def codes(result: Analysis) -> set[str]:
    return {f.code for f in result.diagnosis.findings}


def verified(result: Analysis) -> Outcome:
    """What the recommended patch did when simulated."""
    advice = result.diagnosis.recommendation
    assert advice is not None
    return advice.verified


def alternative(result: Analysis, scheme: str) -> Advice:
    """The candidate (recommended or not) that patched in ``scheme`` alone."""
    advice = result.diagnosis.recommendation
    assert advice is not None
    for option in (advice, *advice.alternatives):
        alone = option.bias is None and option.activation is None and option.batch_norm is None
        if option.init is not None and option.init.scheme == scheme and alone:
            return option
    raise AssertionError(f"{scheme} was not simulated")


def mass(layer: LayerResult, bins: slice) -> float:
    counts = np.array(layer.activations.histogram.counts)
    return float(counts[bins].sum() / counts.sum())


def rms_steps(result: Analysis) -> list[float]:
    rms = [layer.activations.rms or 0.0 for layer in result.simulation.layers]
    return [b / a for a, b in itertools.pairwise(rms)]


# --- sigmoid ---------------------------------------------------------------------------------


def test_sigmoid_std_1_piles_up_at_0_and_1_yet_the_gradient_hardly_decays() -> None:
    result = run("sigmoid", "std=1")
    for layer in result.simulation.layers:
        assert mass(layer, slice(0, 1)) + mass(layer, slice(29, 30)) > 0.5
        assert mass(layer, slice(10, 20)) < 0.15
        assert (layer.activations.saturated_fraction or 0) > 0.45
        assert (layer.mean_derivative_sq or 1) < 0.02  # phi' ~ 0 ...
    assert (result.gradient_decay.first_to_last or 0) > 0.5  # ... yet the gradient survives
    assert result.diagnosis.verdict == "saturation"
    assert "vanishing_gradients" not in codes(result)
    (saturation,) = result.diagnosis.findings
    assert "not vanishing" in saturation.message
    assert verified(result).verdict == "healthy"


def test_sigmoid_std_001_concentrates_near_one_half() -> None:
    result = run("sigmoid", "std=0.01")
    for layer in result.simulation.layers:
        assert layer.activations.mean == pytest.approx(0.5, abs=0.01)
        assert (layer.activations.std or 1) < 0.03
        assert mass(layer, slice(13, 17)) > 0.98  # [0.433, 0.567]
        assert layer.distinct_units == 100  # not identical, only alike
    assert {"concentrated_activations", "vanishing_gradients"} <= codes(result)
    assert (result.gradient_decay.first_to_last or 1) < 1e-5
    assert result.diagnosis.verdict == "vanishing_gradients"
    assert verified(result).verdict == "healthy"
    xavier = alternative(result, "xavier_normal")
    assert "vanishing_gradients" in xavier.verified.findings  # the book's fix is not enough


@pytest.mark.parametrize("init", ["xavier", "he"])
def test_sigmoid_with_scaled_init_keeps_a_broad_bump(init: str) -> None:
    result = run("sigmoid", init)
    for layer in result.simulation.layers:
        assert 0.08 < (layer.activations.std or 0) < 0.35
        assert (layer.activations.saturated_fraction or 0) < 0.01
        counts = np.array(layer.activations.histogram.counts)
        assert np.count_nonzero(counts > 0.01 * counts.sum()) >= 8
    assert not {"saturation", "concentrated_activations"} & codes(result)


def test_sigmoid_xavier_still_loses_gradient_and_the_reason_says_why() -> None:
    """phi' <= 0.25: at sigma_w^2 = 1 each layer scales the gradient RMS by ~sqrt(0.05)."""
    result = run("sigmoid", "xavier")
    assert 0.15 < (result.gradient_decay.per_layer_factor or 0) < 0.3
    assert result.diagnosis.verdict == "vanishing_gradients"
    (finding,) = result.diagnosis.findings
    assert "measured sigma_w^2 E[phi'(z)^2] = 1 x 0.0" in finding.message
    assert verified(result).verdict == "healthy"
    advice = result.diagnosis.recommendation
    assert advice is not None
    reasons = [advice.reason, *(a.reason for a in advice.alternatives)]
    assert any("at most 0.25" in reason for reason in reasons)


# --- tanh ------------------------------------------------------------------------------------


def test_tanh_std_1_saturates_at_plus_minus_1() -> None:
    result = run("tanh", "std=1")
    for layer in result.simulation.layers:
        assert mass(layer, slice(0, 1)) + mass(layer, slice(29, 30)) > 0.8
        assert (layer.activations.saturated_fraction or 0) > 0.7
    assert result.diagnosis.verdict == "saturation"


def test_tanh_std_001_shrinks_tenfold_per_layer() -> None:
    """tanh is linear near 0, so each layer scales the RMS by sqrt(sigma_w^2) = 0.1."""
    result = run("tanh", "std=0.01")
    for step in rms_steps(result):
        assert step == pytest.approx(0.1, rel=0.15)
    assert {"vanishing_activations", "vanishing_gradients"} <= codes(result)
    assert (result.gradient_decay.per_layer_factor or 1) == pytest.approx(0.1, rel=0.15)


@pytest.mark.parametrize("init", ["xavier", "he"])
def test_tanh_with_scaled_init_is_healthy(init: str) -> None:
    result = run("tanh", init)
    assert result.diagnosis.verdict == "healthy"
    last = result.simulation.layers[-1].activations
    assert 0.25 < (last.std or 0) < 0.75
    assert 0.3 < (result.gradient_decay.first_to_last or 0) < 3


# --- ReLU ------------------------------------------------------------------------------------


def test_relu_std_1_explodes_by_sqrt_50_per_layer() -> None:
    result = run("relu", "std=1")
    for step in rms_steps(result):
        assert step == pytest.approx(np.sqrt(50), rel=0.15)
    assert {"exploding_activations", "exploding_gradients"} <= codes(result)
    assert result.diagnosis.verdict == "exploding_gradients"


def test_relu_std_001_collapses_toward_zero() -> None:
    result = run("relu", "std=0.01")
    for step in rms_steps(result):
        assert step == pytest.approx(np.sqrt(0.005), rel=0.15)
    assert {"vanishing_activations", "vanishing_gradients"} <= codes(result)
    assert verified(result).verdict == "healthy"
    assert alternative(result, "he_normal").verified.verdict == "healthy"


def test_relu_xavier_shrinks_by_one_over_sqrt_2_per_layer() -> None:
    result = run("relu", "xavier")
    for step in rms_steps(result):
        assert step == pytest.approx(1 / np.sqrt(2), rel=0.1)
    assert result.gradient_decay.per_layer_factor == pytest.approx(1 / np.sqrt(2), rel=0.1)
    advice = result.diagnosis.recommendation
    assert advice is not None
    assert advice.init is None  # no finding: keep it, and say what the textbook would do
    assert advice.reason.startswith("Keep it")
    assert "would be he_normal" in advice.reason
    assert "activation RMS last/first 0.25" in advice.reason  # (1/sqrt(2))^4


def test_relu_he_keeps_the_same_distribution_in_every_layer() -> None:
    result = run("relu", "he")
    for step in rms_steps(result):
        assert step == pytest.approx(1.0, rel=0.1)
    for layer in result.simulation.layers:
        assert layer.activations.zero_fraction == pytest.approx(0.5, abs=0.07)
    assert result.gradient_decay.per_layer_factor == pytest.approx(1.0, rel=0.1)
    assert result.diagnosis.verdict == "healthy"
    advice = result.diagnosis.recommendation
    assert advice is not None
    assert advice.reason.startswith("Keep it")


def test_the_twelve_cases_have_distinct_fingerprints() -> None:
    """Every case is computed, and no two give the same numbers."""
    fingerprints = {
        (act, init): tuple(x.activations.std for x in run(act, init).simulation.layers)
        for act in ("sigmoid", "tanh", "relu")
        for init in ("std=1", "std=0.01", "xavier", "he")
    }
    assert len(set(fingerprints.values())) == 12
