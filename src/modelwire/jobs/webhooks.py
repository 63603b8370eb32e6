"""Webhooks: the final job state POSTed to ``callback_url``, signed, retried, every attempt recorded.

Signature. ``Modelwire-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}.{body}")>``, with a
fresh ``t`` per attempt; the receiver recomputes it over the raw body and refuses old ``t`` (replays). See
``docs/examples/verify_webhook.py``. The body is the same bytes on every attempt:
``{"type": "job.succeeded", "job": {...}}``.

Retries. A transport error or a non-2xx answer is retried after ``backoff_s(n)`` (exponential, full jitter,
capped) until ``jobs.webhook_max_attempts``; redirects are not followed. Delivery state lives on the job
(``pending`` → ``delivered`` | ``failed``), so deliveries cut short by a restart resume at the next start:
at-least-once, like the jobs themselves (receivers deduplicate on the job id).

Allow-list. ``check_callback_url`` refuses non-http(s) URLs and hosts that resolve to private, loopback,
link-local, reserved or multicast addresses unless ``jobs.webhook_allow`` names them; an IPv6 address that
embeds an IPv4 one (``::ffff:a.b.c.d``, ``::a.b.c.d``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) is judged
as that IPv4 address. It runs at submit (400) and again before each delivery, since DNS can change in
between.

The HTTP client is injected (``WebhookPoster``): the core imports no HTTP stack; ``outbound/webhooks.py``
holds the httpx one.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import ipaddress
import logging
import os
import random
import secrets
import socket
import time
import urllib.parse
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from modelwire.errors import InvalidInputError, ModelwireError
from modelwire.jobs.store import Job, JobStore

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookDispatcher",
    "WebhookPoster",
    "backoff_s",
    "check_callback_url",
    "load_secret",
    "sign",
]

logger = logging.getLogger("modelwire.jobs")

SIGNATURE_HEADER = "Modelwire-Signature"
MAX_CALLBACK_URL_CHARS = 2048  # what browsers and most proxies accept; it is copied into every job read
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class WebhookPoster(Protocol):
    """Sends one POST; returns the status code, raises ``OSError``/``TimeoutError`` (or any ``Exception``)
    when no answer came."""

    async def post(self, url: str, body: bytes, headers: Mapping[str, str], timeout_s: float) -> int: ...

    async def aclose(self) -> None: ...


def sign(secret: bytes, body: bytes, timestamp: int) -> str:
    """The ``Modelwire-Signature`` header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def backoff_s(
    attempt: int, *, base_s: float = 0.5, cap_s: float = 60.0, rng: random.Random | None = None
) -> float:
    """Delay before retry number ``attempt`` (1 = after the first failure): full jitter over ``base·2^n``."""
    ceiling = min(cap_s, base_s * (2 ** (attempt - 1)))
    return (rng or _rng).uniform(0, ceiling)


_rng = random.SystemRandom()


def load_secret(configured: str | None, path: Path) -> bytes:
    """The HMAC key: the configured one, else the one kept in ``path`` (created once, mode 0600)."""
    if configured:
        return configured.encode()
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_hex(32) + "\n")
        try:
            os.link(staging, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            pass
        finally:
            staging.unlink()
    return path.read_text().strip().encode()


async def _resolve(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


def _host_allowed(host: str, allow: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    for entry in allow:
        entry = entry.lower()
        if entry == host or (entry.startswith("*.") and host.endswith(entry[1:])):
            return True
    return False


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: the IPv4 is the low 32 bits
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use: a site's own translator
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # RFC 2765 (SIIT) ::ffff:0:a.b.c.d


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries (mapped, compatible, translated, NAT64, 6to4), if any.

    A host that reaches these forms (a dual-stack kernel, a NAT64 gateway, a 6to4 relay) ends up at that
    IPv4 address, so the allow-list judges it as that address: ``[64:ff9b::7f00:1]`` is loopback.
    """
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    value = int(address)
    if address in _NAT64 or address in _IPV4_TRANSLATED or (value >> 32 == 0 and value > 1):
        return ipaddress.IPv4Address(value & 0xFFFFFFFF)  # the last is ::a.b.c.d; :: and ::1 are IPv6's own
    return None


def _address_allowed(address: IPAddress, allow: Sequence[str]) -> bool:
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            candidates = [embedded, address]  # "public" judges the IPv4; a listed network may name either
    for entry in allow:
        if entry == "public":
            first = candidates[0]
            if first.is_global and not first.is_multicast and first not in _NAT64_LOCAL:
                return True
            continue
        with contextlib.suppress(ValueError):
            network = ipaddress.ip_network(entry, strict=False)
            if any(candidate in network for candidate in candidates):
                return True
    return False


def _describe(address: IPAddress) -> str:
    embedded = _embedded_ipv4(address) if isinstance(address, ipaddress.IPv6Address) else None
    return f"{address} (IPv4 {embedded})" if embedded is not None else str(address)


async def check_callback_url(url: str, allow: Sequence[str], *, resolve: Resolver = _resolve) -> None:
    """Refuse (``InvalidInputError`` on ``$.callback_url``) a URL webhooks must not be sent to."""

    def refuse(why: str) -> InvalidInputError:
        return InvalidInputError(f"callback_url {url[:200]!r} is not allowed: {why}", field="$.callback_url")

    if len(url) > MAX_CALLBACK_URL_CHARS:
        raise refuse(f"it is longer than {MAX_CALLBACK_URL_CHARS} characters")
    try:
        parts = urllib.parse.urlsplit(url)  # raises on a broken [IPv6] host
    except ValueError:
        raise refuse("it is not a valid URL") from None
    if parts.scheme not in ("http", "https"):
        raise refuse("only http and https URLs are")
    host = parts.hostname
    if not host:
        raise refuse("it names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise refuse("its port is not a number from 0 to 65535") from None
    if _host_allowed(host, allow):
        return
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(a.split("%")[0]) for a in await resolve(host, port)]
        except OSError as exc:
            raise refuse(f"its host does not resolve ({exc})") from None
        except UnicodeError:  # IDNA: an empty or over-long label
            raise refuse("its host is not a valid name") from None
    denied = [_describe(a) for a in addresses if not _address_allowed(a, allow)]
    if denied or not addresses:
        raise refuse(
            f"{', '.join(denied) or host} is private, loopback, link-local or reserved, or outside "
            "jobs.webhook_allow"
        )


class WebhookDispatcher:
    """Delivers final job states in background tasks; ``resume()`` picks up the undelivered at start."""

    def __init__(
        self,
        store: JobStore,
        poster: WebhookPoster,
        *,
        secret: str | None,
        secret_path: Path,
        allow: Sequence[str],
        max_attempts: int,
        timeout_s: float,
        base_delay_s: float = 0.5,
    ) -> None:
        self.store = store
        self.poster = poster
        self._configured = secret
        self.secret_path = secret_path
        self.secret = b""
        self.allow = tuple(allow)
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.base_delay_s = base_delay_s
        self._tasks: dict[str, asyncio.Task[bool]] = {}

    def deliver_later(self, job: Job) -> None:
        """Start delivering ``job``'s final state (once per job at a time)."""
        if job.callback_url is None or job.id in self._tasks:
            return
        task = asyncio.create_task(self.deliver(job), name=f"webhook-{job.id}")
        self._tasks[job.id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(job.id, None))

    async def start(self) -> None:
        """Load (or create) the signing key, then resume deliveries a restart cut short."""
        self.secret = await asyncio.to_thread(load_secret, self._configured, self.secret_path)
        await self.resume()

    async def resume(self) -> None:
        for job in await self.store.pending_webhooks():
            self.deliver_later(job)

    async def wait(self, job_id: str) -> bool | None:
        """Wait for an in-flight delivery (tests, shutdown); ``None`` when none is running."""
        task = self._tasks.get(job_id)
        return None if task is None else await task

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.poster.aclose()

    async def deliver(self, job: Job) -> bool:
        """POST until a 2xx or the attempts run out; record each attempt. ``True`` when delivered."""
        assert job.callback_url is not None
        state = job.to_dict()
        state.pop("webhook", None)
        body = msgspec.json.encode({"type": f"job.{job.status.value}", "job": state})
        first = len(job.webhook_attempts) + 1  # > 1 when resuming after a restart
        final = max(first, self.max_attempts)
        for attempt in range(first, final + 1):
            record: dict[str, Any] = {"attempt": attempt, "time": time.time()}
            try:
                await check_callback_url(job.callback_url, self.allow)
                stamp = int(time.time())
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, body, stamp),
                    "Modelwire-Job-Id": job.id,
                    "Modelwire-Delivery-Attempt": str(attempt),
                }
                status = await self.poster.post(job.callback_url, body, headers, self.timeout_s)
                record["status_code"] = status
                ok = 200 <= status < 300
            except ModelwireError as exc:
                record["error"], ok = exc.message, False
            except Exception as exc:  # noqa: BLE001 - the poster's transport errors, whatever its client raises
                record["error"], ok = f"{type(exc).__name__}: {exc}"[:500], False
            last = attempt >= final
            state_name = "delivered" if ok else ("failed" if last else "pending")
            await self.store.record_webhook_attempt(job.id, record, status=state_name)
            if ok:
                return True
            if not last:
                await asyncio.sleep(backoff_s(attempt - first + 1, base_s=self.base_delay_s))
        logger.warning("webhook for job %s not delivered after %d attempts", job.id, final)
        return False
