"""Fan-out and single flight end to end: a 16-cell /sweep against sixteen /analyze calls, and
four identical requests in flight against one.

Run by hand: ``.venv/bin/python benchmarks/bench_fanout.py``. It starts the server as
``make run`` does (``python -m initscope``, default settings) on a free loopback port and, in
one run, alternating, best of N:

- a 4 x 4 simulation /sweep (sigma_w^2 x sigma_b^2) of ReLU networks 1024 samples x 10 layers
  x 256 units, against the sixteen /analyze requests of its cells (the same networks: Gaussian
  weights of std sqrt(sigma_w^2 / 256), Gaussian biases of std sqrt(sigma_b^2), 10 bins,
  ``"theory": false``, ``"recommend": false``) sent one after another, as a client without
  /sweep would (issue 13's target: the sweep <= 0.75x the sixteen);
- four identical uncached /analyze requests of the book's shape sent at once, against one
  (target <= 1.4x): the later three wait for the first's answer.

Every repetition uses a new seed, so the response cache never answers.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.bench_http import _free_port, start_server

SIGMA_W2 = (1.5, 2.0, 2.5, 3.0)
SIGMA_B2 = (0.0, 0.01, 0.05, 0.1)
SAMPLES, DEPTH, WIDTH = 1024, 10, 256


def sweep_body(seed: int) -> dict[str, Any]:
    return {
        "activation": "relu",
        "depth": DEPTH,
        "width": WIDTH,
        "samples": SAMPLES,
        "seed": seed,
        "x": {"param": "sigma_w2", "values": list(SIGMA_W2)},
        "y": {"param": "sigma_b2", "values": list(SIGMA_B2)},
        "metric": "first_to_last",
        "source": "simulation",
    }


def cell_body(sigma_w2: float, sigma_b2: float, seed: int) -> dict[str, Any]:
    bias = {"scheme": "normal", "std": math.sqrt(sigma_b2)} if sigma_b2 else "zeros"
    return {
        "network": {
            "input_dim": WIDTH,
            "depth": DEPTH,
            "width": WIDTH,
            "activation": "relu",
            "init": {"scheme": "normal", "std": math.sqrt(sigma_w2 / WIDTH)},
            "bias": bias,
        },
        "input": {"samples": SAMPLES},
        "histogram": {"bins": 10},
        "theory": False,
        "recommend": False,
        "seed": seed,
    }


def book_body(seed: int) -> dict[str, Any]:
    return {
        "network": {
            "input_dim": 100,
            "depth": 5,
            "width": 100,
            "activation": "relu",
            "init": "he_normal",
        },
        "input": {"samples": 1000},
        "recommend": False,
        "seed": seed,
    }


def best_s(fn: Callable[[int], object], seeds: itertools.count[int], repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        seed = next(seeds)
        start = time.perf_counter()
        fn(seed)
        best = min(best, time.perf_counter() - start)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    port = _free_port()
    server = start_server(port)
    url = f"http://127.0.0.1:{port}"
    seeds = itertools.count(1000)
    try:
        with httpx.Client(base_url=url, timeout=120) as client, ThreadPoolExecutor(4) as pool:

            def post(path: str, body: dict[str, Any]) -> None:
                client.post(path, json=body).raise_for_status()

            def sweep(seed: int) -> None:
                post("/sweep", sweep_body(seed))

            def sixteen(seed: int) -> None:
                for w2, b2 in itertools.product(SIGMA_W2, SIGMA_B2):
                    post("/analyze", cell_body(w2, b2, seed))

            def one(seed: int) -> None:
                post("/analyze", book_body(seed))

            def four(seed: int) -> None:
                list(pool.map(lambda _: post("/analyze", book_body(seed)), range(4)))

            for fn in (sweep, sixteen, one, four):  # warm-up
                fn(next(seeds))
            times: dict[str, list[float]] = {name: [] for name in ("sweep", "16", "1", "4")}
            for _ in range(2):
                times["sweep"].append(best_s(sweep, seeds, args.repeat))
                times["16"].append(best_s(sixteen, seeds, args.repeat))
                times["1"].append(best_s(one, seeds, 5 * args.repeat))
                times["4"].append(best_s(four, seeds, 5 * args.repeat))
    finally:
        server.terminate()
        server.wait(30)
    sweep_s, sixteen_s = min(times["sweep"]), min(times["16"])
    one_s, four_s = min(times["1"]), min(times["4"])
    print(f"CPUs {os.cpu_count()}, load average {os.getloadavg()[0]:.2f}")
    print("| measured | time | ratio (target) |")
    print("|---|---|---|")
    print(f"| 4 x 4 /sweep, {SAMPLES} x {DEPTH} x {WIDTH} | {sweep_s * 1e3:.0f} ms | ", end="")
    print(f"{sweep_s / sixteen_s:.2f} of sixteen /analyze (<= 0.75) |")
    print(f"| sixteen /analyze, one after another | {sixteen_s * 1e3:.0f} ms | |")
    print(f"| four identical book requests at once | {four_s * 1e3:.1f} ms | ", end="")
    print(f"{four_s / one_s:.2f} of one (<= 1.4) |")
    print(f"| one book request | {one_s * 1e3:.1f} ms | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
