"""The outbound HTTP face of webhooks: ``jobs/webhooks.py``'s ``WebhookPoster`` on an httpx client.

Kept out of ``jobs/`` so the core imports no HTTP stack. Redirects are not followed (a redirect could
lead past the callback allow-list) and the environment's proxy settings are ignored.
"""

from __future__ import annotations

from collections.abc import Mapping

import httpx

__all__ = ["HttpxWebhookPoster"]


class HttpxWebhookPoster:
    """POSTs with one pooled ``httpx.AsyncClient``, created on first use."""

    def __init__(self) -> None:
        self._client: httpx.AsyncClient | None = None

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int:
        if self._client is None:
            self._client = httpx.AsyncClient(follow_redirects=False, trust_env=False)
        response = await self._client.post(url, content=body, headers=dict(headers), timeout=timeout_s)
        return response.status_code

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
