"""The cross-site policy as a pure function: which browser requests are refused as forged."""

from __future__ import annotations

import pytest

from modelwire.errors import PermissionDeniedError
from modelwire.security.crosssite import SAFE_METHODS, CrossSitePolicy, normalize_origin

OPEN = CrossSitePolicy(["https://app.example"], any_host=True)  # authentication on
LOCAL = CrossSitePolicy(["https://app.example"], any_host=False)  # authentication off


@pytest.mark.parametrize(
    ("policy", "scheme", "host", "origin", "site"),
    [
        (LOCAL, "http", "127.0.0.1:8000", None, None),  # curl, SDKs
        (LOCAL, "http", "127.0.0.1:8000", None, "same-origin"),
        (LOCAL, "http", "127.0.0.1:8000", None, "none"),  # typed in the address bar
        (LOCAL, "http", "127.0.0.1:8000", "http://127.0.0.1:8000", "same-origin"),
        (LOCAL, "ws", "localhost:8000", "http://localhost:8000", "same-origin"),
        (LOCAL, "http", "[::1]:8000", "http://[::1]:8000", None),
        (LOCAL, "https", "127.0.0.1:443", "https://127.0.0.1", None),  # the default port, spelt out
        (LOCAL, "wss", "127.0.0.1", "https://127.0.0.1", None),
        (LOCAL, "http", "127.0.0.1:8000", "https://app.example", "cross-site"),  # allowed
        (OPEN, "https", "models.example.com", "https://models.example.com", "same-origin"),
    ],
)
def test_allowed(
    policy: CrossSitePolicy, scheme: str, host: str, origin: str | None, site: str | None
) -> None:
    policy.check("POST", scheme, host, origin=origin, fetch_site=site)


@pytest.mark.parametrize(
    ("policy", "scheme", "host", "origin", "site"),
    [
        (LOCAL, "http", "127.0.0.1:8000", "http://evil.example", "cross-site"),
        (LOCAL, "http", "127.0.0.1:8000", "http://localhost:8000", "same-site"),  # another origin
        (LOCAL, "http", "127.0.0.1:8000", "http://127.0.0.1:9000", "same-site"),  # another port
        (LOCAL, "http", "127.0.0.1:8000", "null", "cross-site"),  # a sandboxed frame, a file
        (LOCAL, "http", "127.0.0.1:8000", "https://127.0.0.1:8000", None),  # another scheme
        (LOCAL, "http", "127.0.0.1:8000", None, "cross-site"),
        (LOCAL, "http", "127.0.0.1:8000", None, "same-site"),
        (LOCAL, "http", "rebind.example:8000", "http://rebind.example:8000", "same-origin"),  # DNS rebinding
        (LOCAL, "http", None, "http://127.0.0.1:8000", None),
        (OPEN, "https", "models.example.com", "https://evil.example", "cross-site"),
    ],
)
def test_refused(
    policy: CrossSitePolicy, scheme: str, host: str | None, origin: str | None, site: str | None
) -> None:
    with pytest.raises(PermissionDeniedError, match="cross-site request refused"):
        policy.check("POST", scheme, host, origin=origin, fetch_site=site)


def test_only_state_changing_methods_are_checked() -> None:
    """The middleware checks WebSocket handshakes and every method not in ``SAFE_METHODS``."""
    assert frozenset({"GET", "HEAD", "OPTIONS"}) == SAFE_METHODS


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("HTTPS://App.Example:443/", "https://app.example"),
        ("http://localhost:3000", "http://localhost:3000"),
        ("http://example.com:80", "http://example.com"),
    ],
)
def test_normalize_origin(given: str, expected: str) -> None:
    assert normalize_origin(given) == expected


@pytest.mark.parametrize("bad", ["*", "app.example", "http://a.example/x", "ftp://a.example", "http://"])
def test_not_an_origin(bad: str) -> None:
    with pytest.raises(ValueError, match="origin"):
        normalize_origin(bad)
