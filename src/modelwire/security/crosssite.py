"""Cross-site requests: whether a request is one a web page open in a user's browser could have sent to
this server on the page's own initiative (a form post, a ``fetch`` in ``no-cors`` mode, a WebSocket).

Browsers say where a request comes from: ``Origin`` on every WebSocket handshake and every request whose
method is not GET or HEAD, and ``Sec-Fetch-Site`` (``same-origin``, ``same-site``, ``cross-site``,
``none``) on every request of a current browser. Clients that are not browsers (curl, the SDKs, grpcio,
tritonclient) send neither. So a WebSocket handshake or a state-changing request (any method but GET,
HEAD and OPTIONS) is refused when

- it carries an ``Origin`` that is neither the server's own (``scheme://`` + the ``Host`` it was sent to)
  nor in ``http.allowed_origins`` / ``http.cors_origins``, or
- it carries no ``Origin`` but ``Sec-Fetch-Site: cross-site`` or ``same-site``.

The refusal is the same whether authentication is on or off: with it off (the default on loopback) a
forged request would otherwise run with every scope. Reads (GET) are not refused: without CORS a page
cannot read their answers, and a page that could read them would be listed in ``http.cors_origins``.

DNS rebinding. A page at ``http://evil.example:8000`` whose name is made to resolve to 127.0.0.1 sends
``Origin`` and ``Host`` that agree. With authentication off, "the server's own origin" therefore counts
only for a ``Host`` that is an IP address or ``localhost`` (or an origin listed in the settings); with
authentication on, a rebound page has no credential to send, and any ``Host`` counts.

Pure: the ASGI middleware (``protocols/http/auth.py``) gathers the headers and renders the refusal.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from modelwire.errors import PermissionDeniedError

__all__ = ["SAFE_METHODS", "CrossSitePolicy", "normalize_origin"]

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_BROWSER_INITIATED = frozenset({"cross-site", "same-site"})
_DEFAULT_PORTS = {"http": ":80", "https": ":443"}
_PASSED_CACHE = 1024


def normalize_origin(origin: str) -> str:
    """``HTTP://Example.com:443/`` style spellings to the form browsers send (``https://example.com``)."""
    value = origin.strip().rstrip("/").lower()
    scheme, sep, rest = value.partition("://")
    if not sep or not rest or "/" in rest:
        raise ValueError(
            f"{origin!r} is not an origin: write scheme://host[:port], e.g. http://localhost:3000"
        )
    if scheme not in _DEFAULT_PORTS:
        raise ValueError(f"{origin!r} is not an http:// or https:// origin")
    return f"{scheme}://{rest.removesuffix(_DEFAULT_PORTS[scheme])}"


class CrossSitePolicy:
    """Built once from the settings; ``check`` raises ``PermissionDeniedError`` for a forged request.

    >>> policy = CrossSitePolicy(["http://localhost:3000"], any_host=False)
    >>> policy.check("POST", "http", "127.0.0.1:8000", origin="http://127.0.0.1:8000", fetch_site=None)
    """

    def __init__(self, allowed_origins: Iterable[str] = (), *, any_host: bool = True) -> None:
        self.allowed = frozenset(normalize_origin(o) for o in allowed_origins)
        self.any_host = any_host
        """Whether any ``Host`` makes the server's own origin (authentication on), or only an IP address
        and ``localhost`` (authentication off: the DNS-rebinding guard)."""
        self._passed: set[tuple[str, str, str | None]] = set()
        """``(origin, scheme, host)`` already allowed: a page sends the same few thousands of times, and
        deciding costs ~15 us (``ipaddress``), remembering ~0.3 us. Refusals are not remembered."""

    def check(
        self, method: str, scheme: str, host: str | None, *, origin: str | None, fetch_site: str | None
    ) -> None:
        """Refuse (``PermissionDeniedError``) a request a browser sent on a foreign page's behalf.

        ``scheme`` is the request's (``http``, ``https``, ``ws``, ``wss``), ``host`` its ``Host`` header.
        """
        if origin is not None:
            key = (origin, scheme, host)
            if key in self._passed:
                return
            given = origin.strip().lower()
            if given in self.allowed or self._own(given, scheme, host):
                if len(self._passed) >= _PASSED_CACHE:
                    self._passed.clear()
                self._passed.add(key)
                return
            raise PermissionDeniedError(
                f"cross-site request refused: a page at {origin[:200]!r} may not send {method} requests "
                "or open WebSockets here. If that page is yours, add its origin to http.allowed_origins "
                "(MODELWIRE_HTTP__ALLOWED_ORIGINS)",
                details={"origin": origin[:200], "reason": "cross_site"},
            )
        if fetch_site is not None and fetch_site.strip().lower() in _BROWSER_INITIATED:
            raise PermissionDeniedError(
                f"cross-site request refused: the browser marked this {method} request "
                f"Sec-Fetch-Site: {fetch_site[:40]} and it names no allowed Origin",
                details={"sec_fetch_site": fetch_site[:40], "reason": "cross_site"},
            )

    def _own(self, origin: str, scheme: str, host: str | None) -> bool:
        if not host:
            return False
        web = "https" if scheme in ("https", "wss") else "http"
        own = f"{web}://{host.strip().lower().removesuffix(_DEFAULT_PORTS[web])}"
        if origin != own:
            return False
        return self.any_host or _local_name(host)


def _local_name(host: str) -> bool:
    """An IP literal (``127.0.0.1:8000``, ``[::1]:8000``) or ``localhost``: names DNS cannot rebind."""
    name = host.strip().lower()
    if name.startswith("["):
        name = name[1 : name.find("]")] if "]" in name else name[1:]
    else:
        name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True
