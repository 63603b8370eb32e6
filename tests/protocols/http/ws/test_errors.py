"""The close-code table: every ErrorCode has a code, and the reason always fits a close frame."""

from __future__ import annotations

import pytest

from modelwire.errors import (
    ErrorCode,
    InternalError,
    InvalidInputError,
    ModelwireError,
    PayloadTooLargeError,
    SlowConsumerError,
    UnavailableError,
)
from modelwire.protocols.http.ws import errors


def test_every_error_code_has_a_close_code() -> None:
    assert set(errors.CLOSE_CODE) == set(ErrorCode)
    assert all(1000 <= code <= 1015 and code not in (1004, 1005, 1006) for code in errors.CLOSE_CODE.values())


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PayloadTooLargeError("big"), 1009),
        (SlowConsumerError("slow"), 1013),
        (UnavailableError("bye"), 1001),
        (InvalidInputError("bad"), 1008),
    ],
)
def test_close_for(error: ModelwireError, code: int) -> None:
    assert errors.close_for(error) == (code, error.message)


def test_internal_errors_carry_their_id_and_reasons_fit_a_frame() -> None:
    err = InternalError()
    code, reason = errors.close_for(err)
    assert code == 1011
    assert err.error_id in reason
    code, reason = errors.close_for(InvalidInputError("é" * 200))
    assert len(reason.encode()) <= 123
    assert reason.endswith("...")
