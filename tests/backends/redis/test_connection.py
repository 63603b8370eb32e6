"""``RedisTarget``: what a Redis URL names (the key prefix taken out of it, the password kept out of logs)."""

from __future__ import annotations

from modelwire.backends.redis.connection import RedisTarget


def test_target_parses_the_prefix_and_hides_the_password() -> None:
    target = RedisTarget.parse("redis://:s3cret@10.0.0.5:6380/2?prefix=prod&socket_timeout=5")
    assert target.prefix == "prod:"
    assert target.url == "redis://:s3cret@10.0.0.5:6380/2?socket_timeout=5"
    assert "s3cret" not in target.display
    assert target.display == "redis://10.0.0.5:6380/2?socket_timeout=5"
    assert RedisTarget.parse("redis://localhost").prefix == "modelwire:"
    assert RedisTarget.parse("unix:///run/redis.sock?prefix=a:").prefix == "a:"
