"""Content negotiation: which representation of a result a request asks for, and whether a
request body is JSON."""

from __future__ import annotations

import email.message
from typing import Literal

from fastapi import Request

from initscope.errors import NotAcceptable, UnsupportedMediaType

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


# What a JSON operation reads: FastAPI parses exactly these as JSON (a charset parameter is
# allowed and ignored: JSON is UTF-8).
JSON_BODY_TYPES = ("application/json", "application/*+json")


def is_json(content_type: str) -> bool:
    """Whether a Content-Type header names JSON, parsed the way FastAPI parses it."""
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def json_body(request: Request) -> None:
    """A dependency of every JSON operation: a body that is not declared as JSON is refused
    with 415 before it is validated (FastAPI would hand its raw bytes to the model). Without
    a Content-Type, an empty body is left to the 422 that names the missing body."""
    content_type = request.headers.get("content-type")
    allowed = " or ".join(JSON_BODY_TYPES)
    if content_type is None:
        if await request.body():
            raise UnsupportedMediaType(f"the body has no Content-Type; send {allowed}")
        return
    if not is_json(content_type):
        declared = content_type.split(";", 1)[0].strip() or repr(content_type)
        raise UnsupportedMediaType(f"{declared} is not accepted here; send {allowed}")
