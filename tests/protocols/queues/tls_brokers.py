"""Brokers that speak only TLS and ask for a client certificate, each started by the test on 127.0.0.1.

The certificates come from modelwire's own tooling (``security/certs.py``, what ``modelwire certs init``
writes): one local CA signs the server's certificate (for ``localhost`` and ``127.0.0.1``) and a client
certificate. Each broker verifies the client's certificate against that CA and refuses a connection
without one.

- NATS: ``nats-server`` with a ``tls {}`` block (``verify: true``) and JetStream, on a port it picks itself;
- Redis: ``redis-server --port 0 --tls-port N --tls-auth-clients yes`` (no plain port);
- RabbitMQ: a second node run as a user process next to the machine's own (its own node name, config
  file, Mnesia and log directories, Erlang cookie and distribution port), with an ``ssl`` listener only
  (``verify_peer``, ``fail_if_no_peer_cert``). The machine's ``epmd`` registers it like any node.

A missing binary skips (fails under CI). Each server is stopped by its process id at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from modelwire.security.certs import CertificateFiles, create_local_ca
from tests.required import unavailable

NATS_SERVER = "/usr/sbin/nats-server"
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
_START_S = 90.0


@dataclass(frozen=True)
class TlsBroker:
    """A running TLS-only broker: its URL (credentials included where it needs them) and the files."""

    kind: str
    url: str
    certs: CertificateFiles


def make_certs(directory: Path) -> CertificateFiles:
    return create_local_ca(directory, hosts=("localhost", "127.0.0.1"), days=2)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _wait_for(log: Path, pattern: str, proc: subprocess.Popen[bytes]) -> re.Match[str]:
    deadline = time.monotonic() + _START_S
    while True:
        text = log.read_text(errors="replace") if log.exists() else ""
        if (match := re.search(pattern, text)) is not None:
            return match
        if proc.poll() is not None:
            raise RuntimeError(f"the broker exited {proc.returncode}:\n{text[-3000:]}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not start within {_START_S:g} s:\n{text[-3000:]}")
        await asyncio.sleep(0.05)


def _stop(proc: subprocess.Popen[bytes], *, group: bool = False) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            if group:  # the start script and the Erlang VM it runs: the group this test created
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            proc.wait(10)


@contextlib.asynccontextmanager
async def nats_tls(tmp: Path) -> AsyncIterator[TlsBroker]:
    if not os.access(NATS_SERVER, os.X_OK):
        unavailable(f"{NATS_SERVER} is not installed")
    certs = make_certs(tmp / "certs")
    config = tmp / "nats.conf"
    config.write_text(
        f"""listen: "127.0.0.1:-1"
tls {{
  cert_file: "{certs.server_cert}"
  key_file: "{certs.server_key}"
  ca_file: "{certs.ca_cert}"
  verify: true
  timeout: 5
}}
jetstream {{ store_dir: "{tmp / "jetstream"}" }}
"""
    )
    log = tmp / "nats.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([NATS_SERVER, "-c", str(config)], stdout=out, stderr=subprocess.STDOUT)
    try:
        match = await _wait_for(log, r"Listening for client connections on 127\.0\.0\.1:(\d+)", proc)
        await _wait_for(log, r"Server is ready", proc)
        yield TlsBroker("nats", f"tls://127.0.0.1:{match.group(1)}", certs)
    finally:
        _stop(proc)


@contextlib.asynccontextmanager
async def redis_tls(tmp: Path) -> AsyncIterator[TlsBroker]:
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    certs = make_certs(tmp / "certs")
    port = free_port()
    log = tmp / "redis.log"
    command = [
        binary,
        "--bind", "127.0.0.1",
        "--port", "0",
        "--tls-port", str(port),
        "--tls-cert-file", str(certs.server_cert),
        "--tls-key-file", str(certs.server_key),
        "--tls-ca-cert-file", str(certs.ca_cert),
        "--tls-auth-clients", "yes",
        "--save", "",
        "--appendonly", "no",
        "--dir", str(tmp),
    ]  # fmt: skip
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    try:
        await _wait_for(log, r"Ready to accept connections", proc)
        yield TlsBroker("redis", f"rediss://127.0.0.1:{port}/0", certs)
    finally:
        _stop(proc)


@contextlib.asynccontextmanager
async def rabbitmq_tls(tmp: Path) -> AsyncIterator[TlsBroker]:
    if not os.access(RABBITMQ_SERVER, os.X_OK):
        unavailable(f"{RABBITMQ_SERVER} is not installed")
    certs = make_certs(tmp / "certs")
    port, dist_port = free_port(), free_port()
    for sub in ("home", "mnesia", "log"):
        (tmp / sub).mkdir()
    (tmp / "rabbitmq-env.conf").write_text("")  # not the machine's (its node name and listener)
    (tmp / "enabled_plugins").write_text("[].\n")
    config = tmp / "rabbitmq.conf"
    config.write_text(
        f"""listeners.tcp = none
listeners.ssl.default = 127.0.0.1:{port}
ssl_options.cacertfile = {certs.ca_cert}
ssl_options.certfile = {certs.server_cert}
ssl_options.keyfile = {certs.server_key}
ssl_options.verify = verify_peer
ssl_options.fail_if_no_peer_cert = true
"""
    )
    node = f"mwtls{os.getpid()}x{port}@localhost"
    env = {
        **os.environ,
        "HOME": str(tmp / "home"),  # its own Erlang cookie
        "RABBITMQ_CONF_ENV_FILE": str(tmp / "rabbitmq-env.conf"),
        "RABBITMQ_NODENAME": node,
        "RABBITMQ_CONFIG_FILE": str(config),
        "RABBITMQ_MNESIA_BASE": str(tmp / "mnesia"),
        "RABBITMQ_LOG_BASE": str(tmp / "log"),
        "RABBITMQ_LOGS": "-",
        "RABBITMQ_ENABLED_PLUGINS_FILE": str(tmp / "enabled_plugins"),
        "RABBITMQ_DIST_PORT": str(dist_port),
        "ERL_EPMD_ADDRESS": "127.0.0.1",
        "ERL_FLAGS": "-kernel inet_dist_use_interface {127,0,0,1}",
    }
    log = tmp / "rabbitmq.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [RABBITMQ_SERVER], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        await _wait_for(log, r"Server startup complete", proc)
        yield TlsBroker("rabbitmq", f"amqps://guest:guest@127.0.0.1:{port}/", certs)
    finally:
        _stop(proc, group=True)
