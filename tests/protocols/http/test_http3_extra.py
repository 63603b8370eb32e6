"""--http3 without the http3 extra: a configuration error that names the extra, nothing bound."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelwire import ConfigurationError
from modelwire.protocols.http.http3 import Http3Listener


@pytest.mark.parametrize("missing", ["aioquic", "hypercorn.asyncio.udp_server"])
async def test_http3_without_the_extra_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    monkeypatch.setitem(sys.modules, missing, None)
    listener = Http3Listener(object(), "127.0.0.1", 0, cert=tmp_path / "c.pem", key=tmp_path / "k.pem")
    with pytest.raises(ConfigurationError, match=r"--http3 needs the 'http3' extra.*modelwire\[http3\]"):
        await listener.start()
    assert listener._transport is None
