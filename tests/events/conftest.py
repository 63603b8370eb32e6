from __future__ import annotations

import pytest

from modelwire.events.bus import LocalEventBus


@pytest.fixture
def bus() -> LocalEventBus:
    """A bus with small bounds, so tests reach them: 4 queued events per reader, 8 kept for replay."""
    return LocalEventBus(queue_size=4, replay_size=8)
