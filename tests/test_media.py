from __future__ import annotations

import pytest
from initscope.errors import NotAcceptable
from initscope.http.media import Representation, choose


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (None, "json"),
        ("", "json"),
        ("application/json", "json"),
        ("*/*", "json"),
        ("image/png", "png"),
        ("image/svg+xml", "svg"),
        ("image/*", "png"),
        ("text/html, image/*;q=0.5", "png"),
        ("image/png;q=0.1, image/svg+xml;q=0.9", "svg"),
        ("IMAGE/SVG+XML", "svg"),
        ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", "json"),
        ("image/png, application/json", "png"),  # equal quality: the first listed
    ],
)
def test_accept_header_picks_the_best_available(accept: str | None, expected: str) -> None:
    assert choose(accept, None) == expected


@pytest.mark.parametrize("accept", ["text/html", "image/png;q=0", "application/xml, text/csv"])
def test_nothing_acceptable(accept: str) -> None:
    with pytest.raises(NotAcceptable, match=r"available: application/json, image/png"):
        choose(accept, None)


@pytest.mark.parametrize("override", ["json", "png", "svg"])
def test_format_parameter_overrides_accept(override: Representation) -> None:
    assert choose("text/html", override) == override
