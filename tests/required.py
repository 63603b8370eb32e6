"""What a test needs from the machine (a broker, Redis, Chromium): when it is missing, the test skips on a
developer's machine and fails under CI (``CI`` set to true, 1 or yes), where .ci/run installs it."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(message: str) -> NoReturn:
    """Skip with ``message``; under CI, fail with it instead."""
    if in_ci():
        pytest.fail(f"{message} (CI: it is required)")
    pytest.skip(message)
