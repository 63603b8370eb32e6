"""The interceptor's pure parts: the peer address grpc reports, and lenient request parsing."""

from __future__ import annotations

import pytest

from modelwire.errors import InvalidInputError
from modelwire.protocols.grpc._generated.modelwire.v1 import predictor_pb2 as pb
from modelwire.protocols.grpc.auth import peer_address
from modelwire.protocols.grpc.decoding import Malformed, lenient


@pytest.mark.parametrize(
    ("peer", "address"),
    [
        ("ipv4:127.0.0.1:50512", "127.0.0.1"),
        ("ipv6:[::1]:50512", "::1"),
        ("ipv6:[fe80::1%25eth0]:443", "fe80::1%eth0"),
        ("unix:/tmp/modelwire.sock", None),
        ("", None),
        (None, None),
    ],
)
def test_peer_address(peer: str | None, address: str | None) -> None:
    assert peer_address(peer) == address


def test_lenient_parsing_marks_what_does_not_parse() -> None:
    parse = lenient(pb.Input.FromString)
    assert parse is not None
    assert parse(pb.Input(text="hi").SerializeToString()).text == "hi"
    bad = parse(b"\x0a\x02\xff\xfe")  # field 1 (text) holding invalid UTF-8
    assert isinstance(bad, Malformed)
    assert isinstance(bad.error, InvalidInputError)
    assert "modelwire.v1.Input" in bad.error.message
    assert lenient(None) is None
