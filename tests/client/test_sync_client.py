"""The sync face: a private loop in a thread, started by the first call, stopped by close()."""

from __future__ import annotations

import gc
import threading

import pytest

from modelwire import Client, UnavailableError


def _client_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "modelwire-client"]


def test_no_thread_until_the_first_call_and_none_after_close(refused_port: int) -> None:
    before = len(_client_threads())
    client = Client(f"http://127.0.0.1:{refused_port}")
    assert len(_client_threads()) == before
    with pytest.raises(UnavailableError):
        client.health()
    assert len(_client_threads()) == before + 1
    client.close()
    client.close()  # twice is fine
    assert len(_client_threads()) == before


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_errors_cross_the_thread_as_the_error_tree(scheme: str, refused_port: int) -> None:
    with Client(f"{scheme}://127.0.0.1:{refused_port}") as client, pytest.raises(UnavailableError):
        client.predict("hello")


def test_a_closed_client_refuses_calls() -> None:
    client = Client()
    client.close()
    with pytest.raises(RuntimeError, match="closed"):
        client.predict("hello")


def test_a_dropped_client_stops_its_thread(refused_port: int) -> None:
    before = len(_client_threads())
    client = Client(f"http://127.0.0.1:{refused_port}")
    with pytest.raises(UnavailableError):
        client.health()
    thread = _client_threads()[-1]
    del client
    gc.collect()  # the caught error's traceback holds the client in a reference cycle
    thread.join(5)
    assert not thread.is_alive()
    assert len(_client_threads()) == before
