"""Topic names: which exist, how a subscription pattern matches one. Pure functions, no I/O.

Topics are ``metrics`` (a live snapshot every second), ``models`` (loaded, unloaded, registered, promoted,
default and traffic changes: ``core/admin.py``), ``server`` (ready, stopping), ``alerts`` (alert rules going
pending, firing, resolved: monitoring/), ``features`` (rows written to a feature view) and ``jobs/<id>``
(one job's status and progress). A pattern is a topic, or a
prefix ending in ``/*`` (``jobs/*``: every job), or ``*`` (everything). The client side also takes a
family named alone (``jobs``) as all of it (``expand_families``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from modelwire.errors import InvalidInputError

__all__ = ["FAMILIES", "MAX_TOPICS", "expand_families", "matches", "parse_topics", "validate_topic"]

FAMILIES = ("metrics", "models", "server", "features", "jobs", "alerts")
MAX_TOPICS = 64
_WITH_SUBTOPICS = frozenset({"jobs"})
_TOPIC = re.compile(r"^(metrics|models|server|alerts|features|jobs/(\*|[A-Za-z0-9_.:-]{1,128})|\*)$")


def validate_topic(topic: str, *, field: str = "topic") -> str:
    """Return ``topic`` if it names a topic or pattern modelwire publishes; raise ``InvalidInputError``
    naming ``field`` (where the topic sat in the caller's message)."""
    if not isinstance(topic, str) or not _TOPIC.fullmatch(topic):
        raise InvalidInputError(
            f"unknown topic {str(topic)[:140]!r}: use one of metrics, models, server, alerts, features, "
            "jobs/<id>, "
            "jobs/* or *",
            field=field,
        )
    return topic


def parse_topics(topics: Iterable[str] | str) -> frozenset[str]:
    """Validate a list of topics, or a comma-separated string of them (SSE's ``?topics=``)."""
    items = topics.split(",") if isinstance(topics, str) else list(topics)
    cleaned = [t.strip() for t in items if t.strip()]
    if not cleaned:
        raise InvalidInputError(
            "name at least one topic (metrics, models, server, alerts, features, jobs/<id>)", field="topics"
        )
    if len(cleaned) > MAX_TOPICS:
        raise InvalidInputError(f"at most {MAX_TOPICS} topics per subscription", field="topics")
    return frozenset(validate_topic(t) for t in cleaned)


def expand_families(topics: Iterable[str]) -> list[str]:
    """What a person means by a family named alone: ``jobs`` is every job, ``jobs/*``. The client and
    ``modelwire watch`` accept it; the wire keeps one spelling (a server refuses a bare ``jobs``)."""
    return [f"{topic}/*" if topic in _WITH_SUBTOPICS else topic for topic in topics]


def matches(pattern: str, topic: str) -> bool:
    """Whether a subscription ``pattern`` receives events published on ``topic``."""
    if pattern == topic or pattern == "*":
        return True
    return pattern.endswith("/*") and topic.startswith(pattern[:-1])
