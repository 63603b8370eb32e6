"""The Python floors: what a request costs a server that does nothing but answer it.

- REST: granian (embedded, ``ASGINL``, as modelwire runs it) with a bare ASGI app that reads the body and
  returns a canned JSON answer, no framework.
- gRPC: a ``grpc.aio`` server with one generic unary handler for ``/modelwire.v1.Predictor/Predict`` that
  returns canned protobuf bytes (no serializer, no servicer class, no interceptor).

Each answer is a real ``Output`` (``{"label": "positive", "score": 0.9}``): the load drivers check for a
label. Binds 127.0.0.1 only.

    .venv/bin/python bench/floor.py --http-port 8000 --grpc-port 8001
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

ANSWER = b'{"label":"positive","score":0.9}'
# modelwire.v1.Output{label = "positive" (field 1), score = 0.9 (field 2, float)}
GRPC_ANSWER = b"\x0a\x08positive\x15\x66\x66\x66\x3f"
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


async def serve(http_port: int, grpc_port: int) -> None:
    import grpc
    from granian.constants import HTTPModes, Interfaces
    from granian.server.embed import Server

    async def predict(request: bytes, context: Any) -> bytes:
        return GRPC_ANSWER

    handler = grpc.method_handlers_generic_handler(
        "modelwire.v1.Predictor", {"Predict": grpc.unary_unary_rpc_method_handler(predict)}
    )
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(f"127.0.0.1:{grpc_port}")
    await server.start()
    http = Server(
        app,
        address="127.0.0.1",
        port=http_port,
        interface=Interfaces.ASGINL,
        http=HTTPModes.http1,
        log_enabled=False,
        log_access=False,
    )
    await http.serve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--grpc-port", type=int, required=True)
    args = parser.parse_args()
    asyncio.run(serve(args.http_port, args.grpc_port))


if __name__ == "__main__":
    main()
