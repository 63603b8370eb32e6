"""How one instance crosses from a gateway to a model service unchanged: MessagePack, no I/O.

A text crosses as the Predictor's ``text``; anything else (a number, ``null``, a list, a mapping, bytes)
as ``instance``, these bytes. MessagePack keeps what the Predictor's ``Struct`` would lose (integers stay
integers, bytes stay bytes, floats are 64-bit), so the model service's model sees exactly the value the
gateway's caller sent and validates it where a single server would: in the model, once.
"""

from __future__ import annotations

from typing import Any

import msgspec

from modelwire.core.nesting import check_depth
from modelwire.errors import InvalidInputError

__all__ = ["decode_instance", "encode_instance"]

_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder()


def encode_instance(instance: Any) -> bytes:
    """The bytes of ``Input.instance``; ``InvalidInputError`` for a value MessagePack cannot hold (an
    integer past 64 bits)."""
    try:
        return _encoder.encode(instance)
    except (TypeError, OverflowError, msgspec.EncodeError) as exc:
        raise InvalidInputError(f"the instance cannot be sent to the model service: {exc}") from None


def decode_instance(raw: bytes, max_depth: int) -> Any:
    """``Input.instance`` back to the value; ``InvalidInputError`` (naming ``instance``) when it is not
    MessagePack or nests deeper than ``max_depth``."""
    try:
        value = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise InvalidInputError(f"'instance' is not MessagePack: {exc}", field="instance") from None
    check_depth(value, max_depth, raw)
    return value
