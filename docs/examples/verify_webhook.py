"""Verify a modelwire webhook: the receiver's side of ``Modelwire-Signature``. Standard library only.

    from verify_webhook import verify

    ok = verify(secret, request.headers["Modelwire-Signature"], raw_body)

``secret`` is the server's ``jobs.webhook_secret`` (or the contents of ``<data_dir>/webhook_secret``);
``raw_body`` is the request body exactly as received (bytes, before any JSON parsing).
"""

from __future__ import annotations

import hashlib
import hmac
import time


def verify(
    secret: str | bytes, header: str, body: bytes, *, tolerance_s: float = 300, now: float | None = None
) -> bool:
    """True when ``header`` (``t=<unix>,v1=<hex>``) signs ``body`` with ``secret`` and is recent."""
    key = secret.encode() if isinstance(secret, str) else secret
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        return False  # too old (a replay) or from the future
    expected = hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)
