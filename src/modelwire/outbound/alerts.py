"""Alert notifications over HTTP: each ``[[monitoring.webhooks]]`` receiver gets alert events POSTed,
signed, retried and checked against the allow-list exactly as job webhooks are (``jobs/webhooks.py``:
``Modelwire-Signature``, ``jobs.webhook_allow``, ``jobs.webhook_max_attempts``, the same key).

Two bodies: ``alertmanager`` is Alertmanager's webhook payload (version 4), which receivers written for
Alertmanager (PagerDuty bridges, Grafana OnCall, ...) read; ``slack`` is ``{"text": ...}`` from the
receiver's ``template`` (``string.Template``: ``$name``, ``$state``...), what Slack-style incoming webhooks
(Slack, Mattermost, Rocket.Chat, Teams' connectors) take. ``notify`` never waits: each delivery is a task.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import string
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from modelwire.jobs.webhooks import (
    SIGNATURE_HEADER,
    WebhookPoster,
    backoff_s,
    check_callback_url,
    load_secret,
    sign,
)
from modelwire.monitoring.alerts import AlertEvent
from modelwire.settings import AlertWebhookSettings

__all__ = ["AlertWebhooks", "alertmanager_payload", "slack_payload"]

logger = logging.getLogger("modelwire.monitoring")
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Alertmanager's "not ended yet"


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def alertmanager_payload(event: AlertEvent, external_url: str = "") -> dict[str, Any]:
    """Alertmanager's webhook body (``version: "4"``) for one alert: ``status`` is ``firing`` or
    ``resolved`` (a pending alert, when a receiver asks for it, is sent as ``firing`` with
    ``labels.alertstate = "pending"``)."""
    status = "resolved" if event.state == "resolved" else "firing"
    labels = dict(event.labels)
    if event.state == "pending":
        labels["alertstate"] = "pending"
    annotations = {
        "summary": event.summary or f"{event.monitor} above {event.threshold}",
        "value": "" if event.value is None else repr(event.value),
        "threshold": repr(event.threshold),
    }
    alert = {
        "status": status,
        "labels": labels,
        "annotations": annotations,
        "startsAt": event.active_since or event.since,
        "endsAt": event.since if status == "resolved" else _ZERO_TIME,
        "generatorURL": external_url,
        "fingerprint": event.fingerprint,
    }
    return {
        "version": "4",
        "groupKey": f'{{}}:{{alertname="{event.name}"}}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": "modelwire",
        "groupLabels": {"alertname": event.name},
        "commonLabels": labels,
        "commonAnnotations": annotations,
        "externalURL": external_url,
        "alerts": [alert],
    }


def slack_payload(event: AlertEvent, template: str) -> dict[str, Any]:
    """``{"text": template with the event's fields}`` (unknown ``$names`` are left as written)."""
    fields = {k: "" if v is None else str(v) for k, v in event.to_json().items() if not isinstance(v, dict)}
    return {"text": string.Template(template).safe_substitute(fields)}


class AlertWebhooks:
    """Delivers alert events to the configured receivers, in background tasks."""

    def __init__(
        self,
        receivers: Sequence[AlertWebhookSettings],
        poster: WebhookPoster,
        *,
        secret: str | None,
        secret_path: Path,
        allow: Sequence[str],
        max_attempts: int,
        timeout_s: float,
        base_delay_s: float = 0.5,
    ) -> None:
        self.receivers = tuple(receivers)
        self.poster = poster
        self._configured = secret
        self.secret_path = secret_path
        self.secret = b""
        self.allow = tuple(allow)
        self.max_attempts = max_attempts
        self.timeout_s = timeout_s
        self.base_delay_s = base_delay_s
        self._tasks: set[asyncio.Task[bool]] = set()
        self.delivered = 0
        self.failed = 0

    async def start(self) -> None:
        if self.receivers:
            self.secret = await asyncio.to_thread(load_secret, self._configured, self.secret_path)

    def notify(self, event: AlertEvent) -> None:
        for receiver in self.receivers:
            if event.state not in receiver.states:
                continue
            if receiver.format == "slack":
                payload = slack_payload(event, receiver.template)
            else:
                payload = alertmanager_payload(event)
            body = msgspec.json.encode(payload)
            task = asyncio.create_task(self.deliver(receiver.url, body, event), name="alert-webhook")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def deliver(self, url: str, body: bytes, event: AlertEvent) -> bool:
        for attempt in range(1, self.max_attempts + 1):
            try:
                await check_callback_url(url, self.allow)
                headers = {
                    "Content-Type": "application/json",
                    SIGNATURE_HEADER: sign(self.secret, body, int(time.time())),
                    "Modelwire-Alert": event.name,
                    "Modelwire-Alert-State": event.state,
                    "Modelwire-Delivery-Attempt": str(attempt),
                }
                status = await self.poster.post(url, body, headers, self.timeout_s)
                if 200 <= status < 300:
                    self.delivered += 1
                    return True
                why = f"HTTP {status}"
            except Exception as exc:  # noqa: BLE001 - the poster's transport errors and the allow-list's
                why = f"{type(exc).__name__}: {exc}"[:300]
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff_s(attempt, base_s=self.base_delay_s))
        self.failed += 1
        logger.warning("alert %s (%s) not delivered to %s: %s", event.name, event.state, url, why)
        return False

    async def close(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.poster.aclose()
