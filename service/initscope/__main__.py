"""``python -m initscope [--host H] [--port P] [--workers N]``: the same as ``initscope serve``
(:func:`initscope.http.server.serve`), the container's command."""

from __future__ import annotations

import sys

from initscope import cli


def main(argv: list[str] | None = None) -> None:
    sys.exit(cli.run(["serve", *(sys.argv[1:] if argv is None else argv)]))


if __name__ == "__main__":
    main()
