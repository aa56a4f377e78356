"""Render every request in examples/ to docs/images/ (``make images``), in-process.

Each file is computed as ``initscope <kind> FILE --format png`` would compute it, ``<kind>``
being the first word of its name (analyze, compare, sweep, train, search).
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

from initscope.cli import compute_here
from initscope.jobs import FigureOptions
from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
IMAGES = ROOT / "docs" / "images"


def render(path: Path, options: FigureOptions) -> bytes:
    quiet = Console(file=io.StringIO())  # no progress bars
    image: bytes = compute_here(
        path.name.split("-", 1)[0], json.loads(path.read_text()), options, quiet
    )
    return image


def main() -> int:
    IMAGES.mkdir(parents=True, exist_ok=True)
    for path in sorted(EXAMPLES.glob("*.json")):
        target = IMAGES / f"{path.stem}.png"
        target.write_bytes(render(path, FigureOptions("png")))
        print(f"wrote {target.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
