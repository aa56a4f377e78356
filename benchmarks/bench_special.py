"""initscope.engine.special (NumPy) against the scipy.special kernels it replaced.

Run by hand: ``.venv/bin/python benchmarks/bench_special.py`` (``--repeat N``, default 15).

A layer's worth of pre-activations (2048 x 1024 = 2.1M elements, the engine benchmark's layer),
N(0, s^2) with s = 1 (most values in erf's branch of Phi) and s = 10 (most in erfc's), in
float64 and float32. Cases, interleaved in a rotating order, best and median of N:

* ``ndtr`` and ``expit``: ours against SciPy's ufunc;
* ``GELU forward`` / ``backward``: ``activations.GELU`` as the engine calls it, against the
  same kernels with ``scipy.special.ndtr`` (the code before SciPy was dropped).

Ratios are what to read (ours / SciPy's): the machine may be shared.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from scipy import special as sp

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT / "service") not in sys.path:  # run as a file
    sys.path.insert(0, str(ROOT / "service"))

from initscope.engine import activations, special  # noqa: E402

FloatArray = NDArray[np.floating[Any]]
GELU = activations.GELU()


def scipy_gelu_forward(a: FloatArray) -> FloatArray:
    """GELU.forward as it was: ``a * scipy.special.ndtr(a)``."""
    return activations._times_a(sp.ndtr(a, out=np.empty_like(a)), a)


def scipy_gelu_derivative(a: FloatArray, h: FloatArray) -> FloatArray:
    """GELU.derivative as it was: only its few non-finite / tiny entries call ndtr, so the
    same kernel with SciPy's ndtr swapped in."""
    original = activations.ndtr
    activations.ndtr = sp.ndtr
    try:
        return GELU.derivative(a, h)
    finally:
        activations.ndtr = original


def _pairs(
    a: FloatArray, h: FloatArray
) -> dict[str, tuple[Callable[[], object], Callable[[], object]]]:
    """(ours, SciPy's) per case, on this layer."""
    return {
        "ndtr": (lambda: special.ndtr(a), lambda: sp.ndtr(a)),
        "expit": (lambda: special.expit(a), lambda: sp.expit(a)),
        "GELU forward": (lambda: GELU.forward(a), lambda: scipy_gelu_forward(a)),
        "GELU backward": (lambda: GELU.derivative(a, h), lambda: scipy_gelu_derivative(a, h)),
    }


def timings(cases: dict[str, Callable[[], object]], repeat: int) -> dict[str, list[float]]:
    """Wall times (ms) per case, one warm-up each, then interleaved in a rotating order."""
    for fn in cases.values():
        fn()
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for rep in range(repeat):
        for name in names[rep % len(names) :] + names[: rep % len(names)]:
            start = time.perf_counter()
            cases[name]()
            times[name].append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--repeat", type=int, default=15, help="repetitions per case")
    args = parser.parse_args(argv)
    rng = np.random.default_rng(0)
    print("| input | case | ours ms (best / median) | SciPy ms (best / median) | ratio (best) |")
    print("|---|---|---|---|---|")
    for dtype in (np.float64, np.float32):
        for scale in (1.0, 10.0):
            a = (rng.standard_normal((2048, 1024)) * scale).astype(dtype)
            pairs = _pairs(a, GELU.forward(a))
            cases: dict[str, Callable[[], object]] = {}
            for name, (ours, theirs) in pairs.items():
                cases[f"{name} ours"] = ours
                cases[f"{name} scipy"] = theirs
            times = timings(cases, args.repeat)
            label = f"{np.dtype(dtype).name}, s = {scale:g}"
            for name in pairs:
                ours_t, theirs_t = times[f"{name} ours"], times[f"{name} scipy"]
                print(
                    f"| {label} | {name} | {min(ours_t):.1f} / {statistics.median(ours_t):.1f} "
                    f"| {min(theirs_t):.1f} / {statistics.median(theirs_t):.1f} "
                    f"| {min(ours_t) / min(theirs_t):.2f} |"
                )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
