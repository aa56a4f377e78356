"""The README's Layout section is checked against the tree, so that it cannot drift: every
module and folder of ``service/initscope`` is listed with a line of its own, and nothing listed
is missing."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "service" / "initscope"


def listed() -> set[str]:
    """The paths under ``service/initscope/`` named by the Layout block: an entry is a line's
    first word when it ends in ``.py`` or ``/``; its indentation (2 per level) places it."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Layout\n", 1)[1]
    block = section.split("```", 2)[1]
    lines = block.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == ["service/initscope/"])
    stack: list[str] = []
    names: set[str] = set()
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break  # back at the top of the repository
        word = line.split()[0]
        if not re.fullmatch(r"[\w.]+(\.py|/)", word):
            continue  # a wrapped description
        depth = (len(line) - len(line.lstrip(" "))) // 2 - 1
        del stack[depth:]
        path = "".join(stack) + word
        names.add(path)
        if word.endswith("/"):
            stack.append(word)
    return names


def actual() -> set[str]:
    """Every module but ``__init__.py`` of the package and its sub-packages, and every folder
    (a folder that is not a package is data: listed, its files not)."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*"):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or any(
            not (PACKAGE / Path(*rel.parts[:i]) / "__init__.py").exists()
            for i in range(1, len(rel.parts))
        ):
            continue  # inside a data folder
        if path.is_dir():
            names.add(f"{rel.as_posix()}/")
        elif path.suffix == ".py" and path.name != "__init__.py":
            names.add(rel.as_posix())
    return names


def test_readme_layout_lists_the_tree() -> None:
    readme, tree = listed(), actual()
    assert tree - readme == set(), "in the tree, not in the README's Layout"
    assert readme - tree == set(), "in the README's Layout, not in the tree"
