"""grpcurl (a client nobody on this project wrote) lists and calls services by reflection alone."""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
from pathlib import Path

import pytest

from modelwire.protocols.grpc.server import GrpcListener

GRPCURL = shutil.which("grpcurl") or str(Path(sys.executable).parent / "grpcurl")
pytestmark = pytest.mark.skipif(
    not Path(GRPCURL).exists(), reason="grpcurl (dev dependency) is not installed"
)


async def grpcurl(*args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        GRPCURL, "-plaintext", *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    stdout, stderr = await asyncio.wait_for(process.communicate(), timeout=30)
    assert process.returncode is not None
    return process.returncode, stdout.decode(), stderr.decode()


async def test_grpcurl_lists_services_without_the_proto(listener: GrpcListener) -> None:
    code, out, err = await grpcurl(f"127.0.0.1:{listener.port}", "list")
    assert code == 0, err
    services = set(out.split())
    assert {"modelwire.v1.Predictor", "inference.GRPCInferenceService", "grpc.health.v1.Health"} <= services


async def test_grpcurl_calls_predict(listener: GrpcListener) -> None:
    code, out, err = await grpcurl(
        "-d",
        '{"text": "I love this product"}',
        f"127.0.0.1:{listener.port}",
        "modelwire.v1.Predictor/Predict",
    )
    assert code == 0, err
    answer = json.loads(out)
    assert answer["sentiment"] == "positive"
    assert answer["confidence"] > 0.8


async def test_grpcurl_sees_the_error_code(listener: GrpcListener) -> None:
    code, _out, err = await grpcurl(
        "-d",
        '{"text": "hi", "model": "nope"}',
        f"127.0.0.1:{listener.port}",
        "modelwire.v1.Predictor/Predict",
    )
    assert code != 0
    assert "NotFound" in err


async def test_grpcurl_decodes_the_rich_error_details(listener: GrpcListener) -> None:
    """ErrorInfo resolves by reflection: shown as fields, not "not recognized" and base64."""
    code, _out, err = await grpcurl(
        "-d",
        '{"text": "hi", "model": "nope"}',
        f"127.0.0.1:{listener.port}",
        "modelwire.v1.Predictor/Predict",
    )
    assert code != 0
    assert "not recognized" not in err
    assert '"@type":"type.googleapis.com/google.rpc.ErrorInfo"' in err
    assert '"metadata":{"reason":"MODEL_NOT_FOUND"},"reason":"NOT_FOUND"' in err


@pytest.mark.parametrize(
    "symbol", ["google.rpc.ErrorInfo", "google.rpc.BadRequest", "google.rpc.RetryInfo", "google.rpc.Status"]
)
async def test_grpcurl_describes_the_error_detail_messages(listener: GrpcListener, symbol: str) -> None:
    code, out, err = await grpcurl(f"127.0.0.1:{listener.port}", "describe", symbol)
    assert code == 0, err
    assert f"{symbol} is a message" in out
