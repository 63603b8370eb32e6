"""Autobahn (the kosoku runner) against ``/v1/ws/echo``: a representative subset on every test run.

The whole suite (301 cases without the compression groups 12 and 13, ~15 s) is in docs/conformance.md with
its command; here every group but the slow ones: 6.4.* wait 2 s each for a fail-fast that granian does not
do (NON-STRICT), and 9.* are the large-message performance cases (their smallest sizes stay).
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from kosoku import run_fuzzingclient

from tests.protocols.http.ws.conftest import ws_url
from tests.serving import ThreadedServer

CASES = ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.1.1", "9.2.1", "9.7.1", "10.*"]
SLOW = ["6.4.*"]


@pytest.mark.slow
async def test_autobahn_subset(start_server: Callable[..., ThreadedServer]) -> None:
    server = start_server(max_message_bytes=4 * 1024 * 1024)
    results = await run_fuzzingclient(ws_url(server, "/v1/ws/echo"), CASES, SLOW)
    assert len(results) >= 240
    verdicts = {(r.behavior.value, r.behavior_close.value) for r in results}
    failed = [
        (r.case_id, r.behavior.value, r.behavior_close.value)
        for r in results
        if r.behavior.value not in ("OK", "NON-STRICT", "INFORMATIONAL")
        or r.behavior_close.value not in ("OK", "INFORMATIONAL")
    ]
    assert not failed, failed
    assert ("OK", "OK") in verdicts
