"""End-to-end benchmark: POST /analyze over HTTP against the bare GEMM chain and PyTorch eager.

Run by hand: ``.venv/bin/python benchmarks/bench_http.py`` (``--quick``: the book shape only).
It starts the server as ``make run`` does (``python -m initscope``, default settings: one
worker per usable CPU, threads following the work) on a free loopback port and, side by side
in one run, for each shape (samples x depth x width, ReLU + he_normal, float32), times:

- ``/analyze`` over HTTP (httpx2, one request at a time on an idle server): fields set
  ``network``, ``input.samples``, ``histogram.bins = 30``, ``theory: false``, ``seed`` (a
  new one per request, so the response cache never answers), and ``recommend: false`` at
  the two large shapes (the recommendation simulates candidates; the book's healthy ReLU + He
  network has no finding, so it pays nothing there);
- the bare chain of the same products on 2 BLAS threads in this process
  (:func:`benchmarks.bench_engine.run_chain`, inputs drawn before the timed region);
- PyTorch eager in this process on 2 threads, the same analysis: drawing the weights and the
  input, forward, backward (autograd, the same upstream gradient), per layer mean, std and a
  30-bin histogram of the activations and the weight-gradient norm. Skipped with a message
  when torch is not installed (the Makefile's dev environment has its CPU build, ``make test``
  installs it; never a server dependency).

After a warm-up of each, the three alternate (the order rotates every repetition) and the
best (min) of N is reported, with the ratios against the issue's targets. The machine's load
is printed: timings taken while other processes run are noisy; compare the ratios.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import math
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if importlib.util.find_spec("initscope") is None:  # run as a file without the editable install
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "service"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx2 as httpx
from threadpoolctl import threadpool_limits

from benchmarks.bench_engine import BOOK, Shape, make_chain_inputs, run_chain

SHAPES = (
    dataclasses.replace(BOOK, repeats=30),  # milliseconds over HTTP: the best of more tries
    Shape("medium", 2048, 10, 512, 512, repeats=5, target=1.6),
    Shape("large", 2048, 10, 1024, 1024, repeats=3, target=1.3),
)
TORCH_TARGET = {"book": 0.75, "medium": 1.0, "large": 1.0}
BINS = 30
THREADS = 2


@dataclass(frozen=True)
class Row:
    shape: Shape
    http_ms: float
    chain_ms: float
    torch_ms: float | None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "INITSCOPE_LOG_LEVEL": "warning"}
    server = subprocess.Popen(
        [sys.executable, "-m", "initscope", "--host", "127.0.0.1", "--port", str(port)], env=env
    )
    end = time.monotonic() + 60
    while time.monotonic() < end:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError("the server did not become ready in 60 s")


def body(shape: Shape, seed: int) -> dict[str, Any]:
    request: dict[str, Any] = {
        "network": {
            "input_dim": shape.input_dim,
            "depth": shape.depth,
            "width": shape.width,
            "activation": "relu",
            "init": "he_normal",
        },
        "input": {"samples": shape.samples},
        "histogram": {"bins": BINS},
        "theory": False,
        "seed": seed,
        "dtype": "float32",
    }
    if shape.name != BOOK.name:
        request["recommend"] = False
    return request


def torch_analysis(shape: Shape, seed: int) -> Callable[[], object]:
    """PyTorch eager: the analysis the issue's peer column does, in this process."""
    import torch

    def run() -> object:
        gen = torch.Generator().manual_seed(seed)
        x = torch.randn(shape.samples, shape.input_dim, generator=gen)
        widths = [shape.input_dim, *([shape.width] * shape.depth)]
        weights = []
        for fan_in, fan_out in itertools.pairwise(widths):
            w = torch.randn(fan_in, fan_out, generator=gen) * math.sqrt(2.0 / fan_in)
            weights.append(w.requires_grad_())
        h = x
        outputs = []
        for w in weights:
            h = torch.relu(h @ w)
            h.retain_grad()
            outputs.append(h)
        upstream = torch.randn(shape.samples, shape.width, generator=gen)
        h.backward(upstream)
        stats = []
        with torch.no_grad():
            for out, w in zip(outputs, weights, strict=True):
                low, high = out.min().item(), out.max().item()
                counts = torch.histc(out, bins=BINS, min=low, max=high)
                assert w.grad is not None
                stats.append((out.mean().item(), out.std().item(), counts, w.grad.norm().item()))
        return stats

    return run


def best_ms(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def bench(client: httpx.Client, url: str, shape: Shape, torch_ok: bool) -> Row:
    inputs = make_chain_inputs(shape)
    seeds = iter(range(1_000_000))

    def http() -> None:
        reply = client.post(url, json=body(shape, next(seeds)))
        reply.raise_for_status()

    def chain() -> None:
        with threadpool_limits(THREADS):
            run_chain(inputs)

    runs: dict[str, Callable[[], object]] = {"http": http, "chain": chain}
    if torch_ok:
        runs["torch"] = torch_analysis(shape, 0)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for fn in runs.values():
        fn()  # warm-up
    names = list(runs)
    for rep in range(shape.repeats):
        order = names[rep % len(names) :] + names[: rep % len(names)]
        for name in order:
            times[name].append(best_ms(runs[name]))
    return Row(
        shape,
        min(times["http"]),
        min(times["chain"]),
        min(times["torch"]) if torch_ok else None,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the book shape only")
    args = parser.parse_args(argv)
    torch_ok = importlib.util.find_spec("torch") is not None
    if torch_ok:
        import torch

        torch.set_num_threads(THREADS)
    else:
        print("torch is not installed: no PyTorch column (make .venv/.installed-dev installs it)")
    load = os.getloadavg()
    print(f"CPUs {len(os.sched_getaffinity(0))}, load average {load[0]:.2f} {load[1]:.2f}")
    port = _free_port()
    server = start_server(port)
    rows = []
    try:
        with httpx.Client(timeout=120) as client:
            url = f"http://127.0.0.1:{port}/analyze"
            for shape in SHAPES[:1] if args.quick else SHAPES:
                rows.append(bench(client, url, shape, torch_ok))
    finally:
        server.terminate()
        server.wait(30)
    print(f"load average after {os.getloadavg()[0]:.2f}")
    print(
        "| shape | /analyze HTTP | chain, 2 threads | torch eager | HTTP / chain (target) "
        "| torch / ours (target) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        torch_ms = "-" if row.torch_ms is None else f"{row.torch_ms:.1f} ms"
        ratio = "-" if row.torch_ms is None else f"{row.torch_ms / row.http_ms:.2f}"
        print(
            f"| {row.shape.name} | {row.http_ms:.1f} ms | {row.chain_ms:.1f} ms | {torch_ms} "
            f"| {row.http_ms / row.chain_ms:.2f} (<= {row.shape.target}) "
            f"| {ratio} (>= {TORCH_TARGET[row.shape.label]}) |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
