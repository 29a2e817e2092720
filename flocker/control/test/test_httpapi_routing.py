"""
Unit tests of how the REST API's root routes a path to the route object
mounted under it (`flocker.control._rest`): the mount points and paths with
empty segments are answered as a single Klein application answered them.
"""

from __future__ import annotations

from typing import Any

import pytest

from .test_httpapi import APIHarness


def _answer(api: APIHarness, method: str, path: str) -> tuple[int, Any]:
    """The status and raw body of a request for exactly ``path``."""
    results: list[Any] = []
    d = api.treq.request(  # type: ignore[attr-defined]  # StubTreq's methods are made at run time
        method, "https://control.example" + path, allow_redirects=False
    )
    d.addCallback(lambda r: r.content().addCallback(lambda c: results.append((r.code, c))))
    api.treq.flush()
    (result,) = results
    return result  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("method", "path", "code"),
    [
        ("GET", "/v1/environments", 200),
        ("PUT", "/v1/environments", 405),
        ("GET", "/v1/environments/", 404),
        ("GET", "/v1/configuration", 404),
        ("GET", "/v1/state/", 404),
        ("GET", "//v1/configuration/datasets", 200),
        ("PUT", "//v1/configuration/datasets", 405),
        ("GET", "/v1/datasets/x/snapshots/", 404),
    ],
)
def test_mounted_paths(method: str, path: str, code: int) -> None:
    """Each path gets the status the API has always answered it with."""
    assert _answer(APIHarness(), method, path)[0] == code
