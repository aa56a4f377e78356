"""Advice benchmark: what verifying a recommendation costs beside the analysis it advises.

Run by hand (``.venv/bin/python benchmarks/bench_advice.py``, also part of ``make bench``).
For each network it times ``initscope.engine.analysis.analyze`` in this process with one BLAS
thread (a worker's), first with ``"recommend": false`` and then with the default (every
candidate patch simulated on the request's own input, seed and upstream gradient), after one
warm-up of each (the warm-up also fills the theory caches, as a worker's first request does);
the runs alternate and the best of N is reported, with the ratio and the number of patches
simulated. A healthy network is kept without simulating anything, so its ratio is about 1.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path
from typing import Any

if importlib.util.find_spec("initscope") is None:  # run as a file without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))

from initscope.config import Settings
from initscope.engine.analysis import analyze
from initscope.jobs import AnalysisJob
from initscope.schemas import AnalyzeRequest
from threadpoolctl import threadpool_limits


def _network(depth: int, width: int, activation: str, init: Any, **extra: Any) -> dict[str, Any]:
    return {
        "input_dim": width,
        "depth": depth,
        "width": width,
        "activation": activation,
        "init": init,
        **extra,
    }


_BIAS = {"scheme": "normal", "std": 0.2236}  # sigma_b^2 = 0.05

NETWORKS: dict[str, tuple[dict[str, Any], int]] = {
    "book: sigmoid std 1, 1000 x 5 x 100": (
        _network(5, 100, "sigmoid", {"scheme": "normal", "std": 1.0}),
        1000,
    ),
    "book: relu He, 1000 x 5 x 100 (healthy)": (_network(5, 100, "relu", "he_normal"), 1000),
    "tanh chaotic, 512 x 50 x 100": (
        _network(50, 100, "tanh", {"scheme": "normal", "std": 0.2}, bias=_BIAS),
        512,
    ),
    "relu std 0.01, 2048 x 10 x 512": (
        _network(10, 512, "relu", {"scheme": "normal", "std": 0.01}),
        2048,
    ),
}


def _job(network: dict[str, Any], samples: int, recommend: bool) -> AnalysisJob:
    body = {"network": network, "input": {"samples": samples}, "seed": 0, "recommend": recommend}
    return AnalyzeRequest.model_validate(body).job(Settings())


def _best(job: AnalysisJob, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        analyze(job)
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"{'network':42s} {'plain ms':>9s} {'advised ms':>11s} {'ratio':>6s} {'patches':>8s}")
    with threadpool_limits(limits=1):
        for label, (network, samples) in NETWORKS.items():
            plain, advised = _job(network, samples, False), _job(network, samples, True)
            result = analyze(advised)
            analyze(plain)
            advice = result.diagnosis.recommendation
            tried = 0 if advice is None or not advice.alternatives else 1 + len(advice.alternatives)
            t_plain, t_advised = _best(plain, args.repeats), _best(advised, args.repeats)
            print(
                f"{label:42s} {t_plain * 1e3:9.1f} {t_advised * 1e3:11.1f} "
                f"{t_advised / t_plain:6.2f} {tried:8d}"
            )


if __name__ == "__main__":
    main()
