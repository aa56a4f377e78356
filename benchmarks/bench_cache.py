"""Result-cache benchmark: a repeated request served from the cache against computing it.

Run by hand: ``.venv/bin/python benchmarks/bench_cache.py`` (``--repeat N``, default 20).

The book's request (``examples/analyze-sigmoid-std1.json``: 1000 x 100 input, 5 sigmoid layers
of 100, std 1) through the whole ASGI app with its lifespan and process pool (Starlette's
TestClient), as JSON and as PNG. Per representation, interleaved, best and median of N:

* ``computed``: ``Cache-Control: no-cache``, so the route validates, runs the job in the pool
  (and renders the PNG there), serialises, and stores the body;
* ``cached``: the same request again, answered from the LRU;
* ``304``: ``If-None-Match`` with the response's ETag: no body at all.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from fastapi.testclient import TestClient

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a file: service/ at the root
    sys.path.insert(0, str(ROOT))

from initscope.config import Settings  # noqa: E402
from initscope.http.api import create_app  # noqa: E402

BOOK = json.loads((ROOT / "examples" / "analyze-sigmoid-std1.json").read_text())


def timings(cases: dict[str, Callable[[], int]], repeat: int) -> dict[str, list[float]]:
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
    parser.add_argument("--repeat", type=int, default=20, help="repetitions per case")
    args = parser.parse_args(argv)

    with TestClient(create_app(Settings(workers=1, blas_threads=1))) as client:

        def post(path: str, headers: dict[str, str]) -> Callable[[], int]:
            def call() -> int:
                response = client.post(path, json=BOOK, headers=headers)
                assert response.status_code in (200, 304), response.text
                return len(response.content)

            return call

        cases: dict[str, Callable[[], int]] = {}
        for name, path in (("json", "/analyze"), ("png", "/analyze?format=png")):
            tag = client.post(path, json=BOOK).headers["etag"]
            cases[f"{name} computed"] = post(path, {"cache-control": "no-cache"})
            cases[f"{name} cached"] = post(path, {})
            cases[f"{name} 304"] = post(path, {"if-none-match": tag})
        times = timings(cases, args.repeat)

    print(f"book request through the ASGI app, {args.repeat} runs each (ms)")
    print(f"{'case':<16}{'best':>10}{'median':>10}")
    for name, values in times.items():
        print(f"{name:<16}{min(values):>10.2f}{statistics.median(values):>10.2f}")
    for name in ("json", "png"):
        computed = statistics.median(times[f"{name} computed"])
        cached = statistics.median(times[f"{name} cached"])
        print(f"{name}: computed / cached = {computed / cached:.0f}x (medians)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
