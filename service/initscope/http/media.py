"""Content negotiation: which representation of a result a request asks for."""

from __future__ import annotations

from typing import Literal

from initscope.errors import NotAcceptable

Representation = Literal["json", "png", "svg"]

MEDIA_TYPES: dict[Representation, str] = {
    "json": "application/json",
    "png": "image/png",
    "svg": "image/svg+xml",
}
_BY_MEDIA_TYPE: dict[str, Representation] = {
    **{media: name for name, media in MEDIA_TYPES.items()},
    "*/*": "json",
    "application/*": "json",
    "image/*": "png",
}


def _parse(accept: str) -> list[tuple[float, int, str]]:
    """``(quality, position, media range)`` for each entry of an Accept header (RFC 9110)."""
    entries = []
    for position, item in enumerate(accept.split(",")):
        media, *params = (part.strip() for part in item.split(";"))
        quality = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media:
            entries.append((quality, position, media.lower()))
    return entries


def choose(accept: str | None, override: Representation | None) -> Representation:
    """The ``format`` query parameter wins; else the best acceptable type; JSON by default."""
    if override is not None:
        return override
    if not accept or not accept.strip():
        return "json"
    ranked = sorted(_parse(accept), key=lambda entry: (-entry[0], entry[1]))
    for quality, _, media in ranked:
        if quality > 0 and media in _BY_MEDIA_TYPE:
            return _BY_MEDIA_TYPE[media]
    raise NotAcceptable(
        f"cannot produce any of {accept!r}; available: {', '.join(MEDIA_TYPES.values())} "
        "(or use ?format=json|png|svg)"
    )
