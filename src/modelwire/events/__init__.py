"""The event bus: topics, bounded subscriptions, replay. See ``bus.py`` for how it works."""

from modelwire.events.bus import Event, EventBus, LocalEventBus, Subscription
from modelwire.events.topics import matches, parse_topics, validate_topic

__all__ = ["Event", "EventBus", "LocalEventBus", "Subscription", "matches", "parse_topics", "validate_topic"]
