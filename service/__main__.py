"""``python -m service``: serve the app with uvicorn."""

from __future__ import annotations

import argparse

import uvicorn

from service.api import create_app
from service.config import Settings


def main(argv: list[str] | None = None) -> None:
    defaults = Settings()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default=defaults.host)
    parser.add_argument("--port", type=int, default=defaults.port)
    args = parser.parse_args(argv)
    uvicorn.run(create_app(defaults), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
