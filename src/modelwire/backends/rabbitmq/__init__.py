"""RabbitMQ: the queue consumer (``broker.py``). Imported only when an ``amqp://`` URL is configured."""
