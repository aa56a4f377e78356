"""Engine benchmark: the full in-process analysis against a bare NumPy chain of its matmuls.

Run by hand (``make bench`` or ``.venv/bin/python benchmarks/bench_engine.py``); ``--quick``
runs the book shape only, ``--json`` prints the results as JSON instead of tables.

For each shape (samples x depth x width, relu + he_normal, float32, seed 0) this times
``initscope.engine.analysis.analyze(job)`` -- simulation, every per-layer statistic, the diagnosis,
with the mean-field predictions (``"theory"``) off: they cost the same at any sample count --
in this process (no HTTP, no process pool), as requested by default and with the opt-in
``statistics.effective_rank``, against the bare chain of the same matrix products:

    forward, per layer:   a = h @ W;  h = relu(a)           (in place)
    backward, per layer:  delta = g * (h > 0);  h_prev.T @ delta;  g = delta @ W.T

The chain's input, weights and upstream gradient are drawn *before* its timed region; the
analysis draws its own inside the timed region (as the service does). After one warm-up of
each, the runs are interleaved (default analysis, chain, analysis with effective rank; the
order alternates every repetition) and the best (min) of N is reported; one chain series
serves both tables. Peak memory is the ``tracemalloc`` peak of a separate, untimed run
(NumPy reports its data allocations to tracemalloc; BLAS-internal buffers are not counted);
the chain's peak includes its pre-generated inputs, so both peaks are whole footprints.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import itertools
import json
import math
import os
import platform
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if importlib.util.find_spec("initscope") is None:  # run as a file without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

import numpy as np
from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.jobs import AnalysisJob
from initscope.schemas import AnalyzeRequest
from numpy.typing import NDArray
from threadpoolctl import threadpool_info, threadpool_limits

Array = NDArray[np.float32]


@dataclass(frozen=True)
class Shape:
    label: str
    samples: int
    depth: int
    width: int
    input_dim: int
    repeats: int
    target: float  # the largest acceptable analysis / chain ratio

    @property
    def name(self) -> str:
        return f"{self.samples} x {self.depth} x {self.width}"


BOOK = Shape("book", 1000, 5, 100, 100, repeats=5, target=3.0)
SHAPES = (
    BOOK,
    Shape("medium", 2048, 10, 512, 512, repeats=5, target=1.5),
    Shape("large", 2048, 10, 1024, 1024, repeats=3, target=1.5),
)
SEED = 0


# --- the two workloads -----------------------------------------------------------------------


def make_job(shape: Shape, *, effective_rank: bool) -> AnalysisJob:
    """The job the service would build for this shape, through the HTTP schema."""
    body: dict[str, Any] = {
        "network": {
            "input_dim": shape.input_dim,
            "depth": shape.depth,
            "width": shape.width,
            "activation": "relu",
            "init": "he_normal",
        },
        "input": {"samples": shape.samples},
        "statistics": {"effective_rank": effective_rank},
        "theory": False,  # the engine: simulation, statistics, diagnosis (theory is timed apart)
        "recommend": False,  # and no advice: bench_advice.py times its verification
        "seed": SEED,
        "dtype": "float32",
    }
    return AnalyzeRequest.model_validate(body).job(Settings())


@dataclass(frozen=True)
class ChainInputs:
    x: Array
    weights: tuple[Array, ...]
    upstream: Array

    @property
    def nbytes(self) -> int:
        return self.x.nbytes + self.upstream.nbytes + sum(w.nbytes for w in self.weights)


def make_chain_inputs(shape: Shape) -> ChainInputs:
    """N(0, 1) input and upstream gradient, He-normal weights, all float32."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((shape.samples, shape.input_dim), dtype=np.float32)
    widths = [shape.input_dim, *([shape.width] * shape.depth)]
    weights = []
    for fan_in, fan_out in itertools.pairwise(widths):
        w = rng.standard_normal((fan_in, fan_out), dtype=np.float32)
        w *= np.float32(math.sqrt(2.0 / fan_in))
        weights.append(w)
    upstream = rng.standard_normal((shape.samples, shape.width), dtype=np.float32)
    return ChainInputs(x, tuple(weights), upstream)


def run_chain(inputs: ChainInputs) -> float:
    """The simulation's matrix products and nothing else (plus relu and its mask)."""
    h = inputs.x
    kept: list[tuple[Array, Array, Array]] = []  # (h_prev, W, h)
    for w in inputs.weights:
        a = h @ w
        np.maximum(a, 0.0, out=a)
        kept.append((h, w, a))
        h = a
    g = inputs.upstream
    grad_w = g
    for h_prev, w, h_out in reversed(kept):
        delta = g * (h_out > 0)
        grad_w = h_prev.T @ delta
        g = delta @ w.T
    return float(g[0, 0] + grad_w[0, 0])


# --- measurement -----------------------------------------------------------------------------


def timed_ms(fn: Callable[[], object]) -> float:
    gc.collect()
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def traced_peak(fn: Callable[[], object]) -> int:
    """tracemalloc peak in bytes of one call (allocations made before the call not counted)."""
    gc.collect()
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


@dataclass
class Result:
    shape: str
    label: str
    samples: int
    depth: int
    width: int
    input_dim: int
    repeats: int
    target: float
    gflop: float  # forward + the two backward products, 2 flops per multiply-add
    chain_ms: float = 0.0
    analysis_ms: float = 0.0  # the default request
    analysis_erank_ms: float = 0.0  # with the opt-in effective rank
    chain_peak_mib: float = 0.0  # includes the pre-generated inputs
    analysis_peak_mib: float = 0.0
    analysis_erank_peak_mib: float = 0.0
    runs_ms: dict[str, list[float]] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        return self.analysis_ms / self.chain_ms

    @property
    def ratio_erank(self) -> float:
        return self.analysis_erank_ms / self.chain_ms

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ratio"] = round(self.ratio, 3)
        out["ratio_erank"] = round(self.ratio_erank, 3)
        out["pass"] = self.ratio <= self.target
        return out


def bench(shape: Shape, log: Callable[[str], None]) -> Result:
    default_job = make_job(shape, effective_rank=False)
    erank_job = make_job(shape, effective_rank=True)
    inputs = make_chain_inputs(shape)
    result = Result(
        shape=shape.name,
        label=shape.label,
        samples=shape.samples,
        depth=shape.depth,
        width=shape.width,
        input_dim=shape.input_dim,
        repeats=shape.repeats,
        target=shape.target,
        gflop=default_job.flops / 1e9,
    )
    runs: dict[str, Callable[[], object]] = {
        "analysis": lambda: analyze(default_job),
        "chain": lambda: run_chain(inputs),
        "analysis_erank": lambda: analyze(erank_job),
    }
    log(f"{shape.name}: warm-up")
    for fn in runs.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in runs}
    order = list(runs)
    for rep in range(shape.repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            times[name].append(timed_ms(runs[name]))
        log(f"{shape.name}: rep {rep + 1}/{shape.repeats} " + _fmt_reps(times))
    result.runs_ms = {name: [round(t, 3) for t in ts] for name, ts in times.items()}
    result.analysis_ms = min(times["analysis"])
    result.chain_ms = min(times["chain"])
    result.analysis_erank_ms = min(times["analysis_erank"])

    log(f"{shape.name}: tracemalloc peaks")
    mib = 2.0**20
    result.analysis_peak_mib = traced_peak(runs["analysis"]) / mib
    result.analysis_erank_peak_mib = traced_peak(runs["analysis_erank"]) / mib
    # the chain with its inputs drawn inside the traced region, so its peak includes them
    result.chain_peak_mib = traced_peak(lambda: run_chain(make_chain_inputs(shape))) / mib
    return result


def _fmt_reps(times: dict[str, list[float]]) -> str:
    return " ".join(f"{name}={ts[-1]:.1f}ms" for name, ts in times.items())


# --- report ----------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    blas = [
        {
            key: info.get(key)
            for key in (
                "internal_api",
                "version",
                "num_threads",
                "threading_layer",
                "architecture",
                "filepath",
            )
        }
        for info in threadpool_info()
    ]
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "usable_cpus": cpus,
        "threadpools": blas,
    }


def print_environment(env: dict[str, Any]) -> None:
    print(f"python {env['python']}  numpy {env['numpy']}  {env['platform']}")
    print(f"usable CPUs: {env['usable_cpus']}")
    for pool in env["threadpools"]:
        print(
            f"BLAS: {pool['internal_api']} {pool['version']}  threads={pool['num_threads']}  "
            f"layer={pool['threading_layer']}  arch={pool['architecture']}  "
            f"({Path(str(pool['filepath'])).name})"
        )
    print(
        "workload: relu + he_normal, float32, seed 0, input_dim = width; analysis = "
        "initscope.engine.analysis.analyze(job) in-process (draws its own input, weights and "
        "gradient inside the timed region); chain = bare NumPy matmuls + relu + relu mask on "
        "pre-generated input, weights and upstream gradient (drawn outside the timed region)."
    )
    print(
        "times: best of N after one warm-up, runs interleaved; peak = tracemalloc peak of a "
        "separate untimed run (chain peak includes its inputs)."
    )


def print_table(results: Sequence[Result], *, effective_rank: bool) -> None:
    title = "with the opt-in effective_rank" if effective_rank else "default request"
    header = (
        f"{'shape':<20} {'N':>2} {'analysis ms':>12} {'chain ms':>10} {'ratio':>7} "
        f"{'target':>7} {'result':>6} {'chain GF/s':>10} {'analysis MiB':>13} {'chain MiB':>10}"
    )
    print()
    print(f"== {title} ==")
    print(header)
    print("-" * len(header))
    for r in results:
        ms = r.analysis_erank_ms if effective_rank else r.analysis_ms
        ratio = r.ratio_erank if effective_rank else r.ratio
        peak = r.analysis_erank_peak_mib if effective_rank else r.analysis_peak_mib
        verdict = ("PASS" if ratio <= r.target else "MISS") if not effective_rank else "-"
        print(
            f"{r.shape:<20} {r.repeats:>2} {ms:>12.1f} {r.chain_ms:>10.1f} {ratio:>7.2f} "
            f"{'<=' + format(r.target, 'g'):>7} {verdict:>6} {r.gflop / r.chain_ms * 1e3:>10.1f} "
            f"{peak:>13.1f} {r.chain_peak_mib:>10.1f}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="run the book shape only")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--threads",
        type=int,
        default=Settings().threads_per_worker,
        help="BLAS threads (default: a worker's, as the service runs the engine)",
    )
    args = parser.parse_args(argv)

    def log(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    shapes = (BOOK,) if args.quick else SHAPES
    with threadpool_limits(limits=args.threads):
        env = environment()
        if not args.json:
            print_environment(env)
        results = [bench(shape, log) for shape in shapes]
    if args.json:
        print(json.dumps({"environment": env, "results": [r.as_dict() for r in results]}, indent=2))
    else:
        print_table(results, effective_rank=False)
        print_table(results, effective_rank=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
