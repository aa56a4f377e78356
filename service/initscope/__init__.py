"""initscope: network-initialisation analysis as a REST service.

``from initscope import Client`` (or ``AsyncClient``) gives the typed HTTP client; the names
are loaded on first use (PEP 562), so the server's workers, which import ``initscope.engine``,
do not pay for the client's imports.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["AsyncClient", "Client", "__version__"]

if TYPE_CHECKING:
    from initscope.client import AsyncClient, Client


def __getattr__(name: str) -> Any:
    if name in ("AsyncClient", "Client"):
        from initscope import client

        return getattr(client, name)
    raise AttributeError(f"module 'initscope' has no attribute {name!r}")
