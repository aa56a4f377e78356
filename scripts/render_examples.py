"""Render every request in examples/ to docs/images/ (``make images``), in-process."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from service.analysis import analyze
from service.config import Settings
from service.jobs import FigureOptions
from service.render import render_analysis, render_comparison, render_sweep
from service.results import Comparison, Variant
from service.schemas import AnalyzeRequest, CompareRequest, SweepRequest, to_jobs
from service.sweep import run_sweep

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IMAGES = ROOT / "docs" / "images"


def render(path: Path, options: FigureOptions) -> bytes:
    body = json.loads(path.read_text())
    settings = Settings()
    if path.name.startswith("sweep-"):
        return render_sweep(run_sweep(SweepRequest.model_validate(body).job(settings)), options)
    if path.name.startswith("compare-"):
        jobs = to_jobs(CompareRequest.model_validate(body), settings)
        comparison = Comparison(tuple(Variant(name, analyze(job)) for name, job in jobs))
        return render_comparison(comparison, options)
    return render_analysis(analyze(AnalyzeRequest.model_validate(body).job(settings)), options)


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for path in sorted(EXAMPLES.glob("*.json")):
        target = IMAGES / f"{path.stem}.png"
        target.write_bytes(render(path, FigureOptions("png")))
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
