"""NATS and JetStream: the queue consumer (``broker.py``), imported only when a ``nats://`` URL is set."""
