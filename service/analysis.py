"""The unit of work the pool runs: simulate, measure, diagnose."""

from __future__ import annotations

import time

from service import __version__
from service.diagnosis import diagnose
from service.jobs import AnalysisJob
from service.results import Analysis, GradientDecay, Meta, Simulation
from service.simulation import simulate


def gradient_decay(sim: Simulation) -> GradientDecay:
    """``first_to_last`` = RMS(dL/dh_1) / RMS(dL/dh_L); the per-layer factor is its geometric
    mean over the L - 1 steps between them."""
    ratio = sim.layers[0].gradients.relative_to_last
    steps = len(sim.layers) - 1
    if ratio is None:
        return GradientDecay(None, None)
    return GradientDecay(ratio, ratio ** (1 / steps) if steps else 1.0)


def analyze(job: AnalysisJob) -> Analysis:
    """Top-level and picklable: what the process pool runs for /analyze."""
    start = time.perf_counter()
    sim = simulate(job)
    diagnosis = diagnose(job, sim)
    elapsed_ms = (time.perf_counter() - start) * 1e3
    meta = Meta(job.seed, job.dtype, job.flops, round(elapsed_ms, 3), __version__)
    return Analysis(sim, gradient_decay(sim), diagnosis, meta)
