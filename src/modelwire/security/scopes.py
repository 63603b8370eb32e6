"""The scope an action needs when the route alone cannot say: submitting a job (it depends on the job's
kind) and subscribing to events (it depends on the topic). Pure functions over ``Principal``; the jobs
façade and the event bus call them, so every wire (REST, gRPC, WebSocket, SSE) gets the same answer.

The route-level scopes (``policy.rest_scope`` / ``grpc_scope``) are checked first, at the edge; these
checks come on top, where the action happens.
"""

from __future__ import annotations

from collections.abc import Iterable

from modelwire.errors import PermissionDeniedError
from modelwire.security.principal import Principal, Scope

__all__ = ["job_scope", "require_topics", "topic_scope"]


def job_scope(kind: str) -> Scope:
    """The scope submitting a job of ``kind`` needs: a training job changes the model everyone is served,
    so it needs ``models:admin``; a prediction job ``jobs:write``. The jobs façade asks this for every
    wire (REST ``/v1/jobs`` and ``/v1/models/{name}/train``, gRPC ``Jobs/Submit`` and ``SubmitStream``)."""
    return Scope.MODELS_ADMIN if kind == "train" else Scope.JOBS_WRITE


def topic_scope(topic: str) -> frozenset[Scope]:
    """The scopes that may each receive events on ``topic`` (a topic or pattern): ``events`` for the live
    streams (``metrics``, ``models``, ``server``, ``alerts``, ``jobs/*``, ``*``); following one job
    (``jobs/<id>``) is reading it, so ``jobs:read`` will do too (and the bus delivers only the caller's own
    jobs' events)."""
    if topic.startswith("jobs/") and topic != "jobs/*":
        return frozenset({Scope.EVENTS, Scope.JOBS_READ})
    return frozenset({Scope.EVENTS})


def require_topics(principal: Principal, topics: Iterable[str]) -> None:
    """Raise ``PermissionDeniedError`` (naming the scope and the topic) unless ``principal`` may receive
    every topic. The event bus calls this for every subscription, so no wire can skip it."""
    for topic in topics:
        allowed = topic_scope(topic)
        if not any(principal.has(scope) for scope in allowed):
            needed = Scope.EVENTS
            raise PermissionDeniedError(
                f"this credential lacks the {needed.value!r} scope needed to subscribe to {topic[:140]!r}",
                details={
                    "required_scope": needed.value,
                    "topic": topic[:140],
                    "granted": sorted(s.value for s in principal.scopes),
                },
            )
