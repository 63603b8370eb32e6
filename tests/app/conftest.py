from __future__ import annotations

from tests.core.conftest import running_services

__all__ = ["running_services"]  # started services for a test, as in tests/core
