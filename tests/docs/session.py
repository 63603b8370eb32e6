"""Run a file's runnable blocks in order in one bash session, as a user pasting them would, and report.

The session is ``bash`` on a generated script: each shell block is ``source``d (so variables and ``cd``
carry over), each Python block run with the venv's ``python``, each with its stdout and stderr in files of
its own, under ``set -e``. The script writes ``start N`` / ``end N`` on a pipe (fd 3, which the blocks'
commands do not inherit, so a server a block leaves running does not hold it open); the harness reads it
with a deadline per block, and at the end kills the session's process group (what blocks left running).
"""

from __future__ import annotations

import contextlib
import os
import selectors
import shlex
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.docs.blocks import Block, file_named, ports_named, rewrite_ports

BLOCK_TIMEOUT_S = 120.0
TAIL = 3000


@dataclass
class Outcome:
    block: Block
    code: str  # as run, after the port rewrite
    finished: bool  # False: it failed, timed out, or one before it did
    status: str
    stdout: str
    stderr: str

    def report(self, root: Path, why: str) -> str:
        """What a failure shows: where, the block as run, its status and the tail of its output."""
        return (
            f"{self.block.path.relative_to(root)}:{self.block.line}: ```{self.block.lang} block {why}\n"
            f"--- the block as run (ports rewritten) ---\n{self.code}"
            f"--- status: {self.status}\n"
            f"--- stdout (tail) ---\n{self.stdout[-TAIL:]}\n"
            f"--- stderr (tail) ---\n{self.stderr[-TAIL:]}\n"
            "(a block that cannot run in a test: `<!-- not-run: reason -->` on the line before its fence)"
        )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def port_map(blocks: list[Block], http_port: int, grpc_port: int) -> dict[int, int]:
    """8000 and 8001 are the test server's; any other port the blocks name gets a free one of its own."""
    ports = {8000: http_port, 8001: grpc_port}
    for block in blocks:
        for number in sorted(ports_named(block.code) - set(ports)):
            ports[number] = free_port()
    return ports


def _script(
    blocks: list[Block], folder: Path, work: Path, ports: dict[int, int], status_fd: int
) -> list[str]:
    """Write each block's file and the session script; returns the blocks' code as run."""
    quote = shlex.quote
    script = [f"exec </dev/null 3>&{status_fd} {status_fd}>&-", f"cd {quote(str(folder))}", "set -e"]
    codes = []
    for number, block in enumerate(blocks):
        code = rewrite_ports(block.code, ports)
        codes.append(code)
        streams = f">{quote(str(work / f'{number}.out'))} 2>{quote(str(work / f'{number}.err'))} 3>&-"
        script.append(f"printf 'start {number}\\n' >&3")
        if block.kind == "python":
            target = file_named(block)
            source = folder / target if target else work / f"{number}.py"
            source.parent.mkdir(parents=True, exist_ok=True)
            source.write_text(code)
            script.append(f"python {quote(str(source))} {streams}")
        else:
            # Each command's output starts on a line of its own, as a terminal shows it after the prompt
            # (curl prints JSON with no final newline): the block echoes a newline before each command.
            (work / f"{number}.sh").write_text("trap 'echo' DEBUG\n" + code + "trap - DEBUG\n")
            script.append(f"source {quote(str(work / f'{number}.sh'))} {streams}")
        script.append(f"printf 'end {number}\\n' >&3")
    (work / "session.sh").write_text("\n".join(script) + "\n")
    return codes


def run_session(
    blocks: list[Block], folder: Path, env: dict[str, str], ports: dict[int, int]
) -> list[Outcome]:
    """Run ``blocks`` in order in one bash session in ``folder``; it stops at the first that fails."""
    work = folder / ".docs-harness"
    work.mkdir()
    read_end, write_end = os.pipe()
    codes = _script(blocks, folder, work, ports, write_end)
    finished: set[int] = set()
    running: int | None = None
    stuck: int | None = None
    with open(work / "session.err", "wb") as session_err:
        process = subprocess.Popen(
            ["bash", "--noprofile", "--norc", str(work / "session.sh")],
            cwd=folder,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=session_err,
            pass_fds=(write_end,),
            start_new_session=True,
        )
        os.close(write_end)
        try:
            with os.fdopen(read_end, "rb", buffering=0) as status, selectors.DefaultSelector() as selector:
                selector.register(status, selectors.EVENT_READ)
                pending = b""
                deadline = time.monotonic() + BLOCK_TIMEOUT_S
                while True:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        stuck = running
                        break
                    if not selector.select(timeout=left):
                        continue
                    chunk = status.read(4096)
                    if not chunk:
                        break  # the session ended: all done, or a command failed under set -e
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    for line in lines:
                        word, number = line.decode().split()
                        if word == "start":
                            running = int(number)
                            deadline = time.monotonic() + BLOCK_TIMEOUT_S
                        else:
                            finished.add(int(number))
                            running = None
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # the session, and whatever its blocks left running
            process.wait(30)
    return [
        _outcome(number, block, codes[number], work, finished, stuck, process.returncode)
        for number, block in enumerate(blocks)
    ]


def _outcome(
    number: int, block: Block, code: str, work: Path, finished: set[int], stuck: int | None, exit_status: int
) -> Outcome:
    out, err = work / f"{number}.out", work / f"{number}.err"
    stdout = out.read_text(errors="replace") if out.exists() else ""
    stderr = err.read_text(errors="replace") if err.exists() else ""
    if number in finished:
        state = "ok"
    elif number == stuck:
        state = f"timed out after {BLOCK_TIMEOUT_S:.0f} s (the harness killed it)"
    elif out.exists():
        state = f"failed: the session exited with status {exit_status} (set -e: a failing command ends it)"
    else:
        state = "not reached (a block before it failed)"
    return Outcome(block, code, number in finished, state, stdout, stderr)
