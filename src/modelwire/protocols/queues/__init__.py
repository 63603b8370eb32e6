"""The queue adapter: inference requests from message brokers (RabbitMQ, NATS, Redis Streams; docs/queues.md).

``messages`` (request bodies and answers, no I/O), ``consumer`` (one broker's deliveries through the
``DataPlane``). The brokers themselves are in ``backends/`` behind ``backends/queue.py``.
"""

from modelwire.protocols.queues.consumer import QueueConsumer

__all__ = ["QueueConsumer"]
