"""Docs that run: every fenced code block of README.md, SECURITY.md and docs/*.md is run or checked here.

What happens to a block depends on its info string (the word after the opening fence):

- ``bash``, ``sh``, ``shell``: run. The shell blocks of one file run in order in ONE bash session (what a
  user pasting them in order gets: variables, ``cd`` and files carry over), under ``set -e`` (a failing
  command fails the block), with the test venv's ``modelwire``, ``python``, ``grpcurl`` first on PATH.
- ``python``: saved to a file and run with the venv's python, in the same session folder, in order with
  the file's shell blocks (so it sees their files and exported variables). A block whose first line is a
  comment naming a file (``# mypackage/models.py``) is written to that path, for later blocks to use.
- ``text``, ``console``, ``json``, ``toml``, ``proto``, ``http``, ``yaml``, ``js``...: shown only. ``json``
  must parse (one value, or one per line); ``toml`` must parse, and one whose top-level keys are all
  settings must load through ``Settings`` as a ``modelwire.toml``.
- No info string, or an unknown one: a failure (say what the block is).

A block that cannot run here is marked by a line right before its fence: ``<!-- not-run: the reason -->``.
The reason must not be empty (say why, and what tests the same thing instead); the skipped blocks and their
reasons are printed with the test's result, one line each.

Each file with runnable blocks gets a real server of its own (the ``Server`` of ``modelwire serve``, the
default model, 127.0.0.1, ports picked by the kernel) and a fresh folder as the session's working directory,
with ``HOME`` beside it: ``~/.local/share/modelwire``, the default data dir, is the server's, so
``modelwire keys`` and ``certs`` write where the server reads. ``.venv`` in the folder links to the test
venv, for blocks written from a checkout (``.venv/bin/modelwire``). Blocks are written for the documented
ports; the harness rewrites, and changes nothing else, the port of a loopback address (``127.0.0.1:8000``,
``localhost:8001``, ``[::1]:...``) and of a ``--...-port N`` flag: 8000 becomes the server's REST port, 8001
its gRPC port, any other number a free port of its own (the same within a file) for a server the block
starts itself (with ``&``, stopped with ``kill $!``; what is left running is killed with the session's
process group). ``MODELWIRE_URL`` names the test server, since the CLI's default is 127.0.0.1:8000.
pip may not reach an index (``PIP_NO_INDEX``): what the test venv has is there; a block that downloads is
marked not-run.

Shown output: a comment ``# -> text`` (on a line of its own, or at the end of a line) shows a line the
block prints on stdout. The lines shown must all appear in the block's output, in the order shown (lines
not shown may come between); ``…`` in a shown line stands for any text. Output that is not deterministic
is written with ``…``, or as a plain ``#`` comment, which is not checked.

Each block has ``session.BLOCK_TIMEOUT_S`` seconds. A failure names the file and line, the block as run
(ports rewritten), its status and the tail of its stdout and stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelwire.settings import Settings
from tests.docs.blocks import Block, matches, parse
from tests.docs.session import port_map, run_session
from tests.serving import ThreadedServer

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]
VENV_BIN = Path(sys.executable).parent
RUNNABLE = [path for path in DOCS if any(block.kind in {"shell", "python"} for block in parse(path))]


def names(paths: list[Path]) -> list[str]:
    return [str(path.relative_to(ROOT)) for path in paths]


@pytest.mark.parametrize("path", DOCS, ids=names(DOCS))
def test_every_block_says_what_it_is(path: Path) -> None:
    """An info string the harness knows, a reason for each not-run mark, json that parses, toml that loads,
    Python that compiles (not-run blocks included)."""
    problems = []
    for block in parse(path):
        if block.kind == "unknown":
            problems.append(
                f"{block.where}: info string {block.lang!r} is not one the docs harness knows: bash or "
                f"python for a block that runs, text/console/json/toml/... for one only shown"
            )
        if block.not_run is not None and not block.not_run:
            problems.append(f"{block.where}: `<!-- not-run: -->` needs a reason after the colon")
        if block.not_run is not None and block.kind not in {"shell", "python"}:
            problems.append(f"{block.where}: a {block.lang} block is never run; drop its not-run mark")
        if block.kind == "python":
            try:
                compile(block.code, block.where, "exec")
            except SyntaxError as error:
                problems.append(f"{block.where}: python that does not compile: {error}")
        if block.lang == "json":
            problems.extend(json_problems(block))
        if block.lang == "toml":
            problems.extend(toml_problems(block))
    assert not problems, "\n".join(problems)


def json_problems(block: Block) -> list[str]:
    """One JSON value, or JSON Lines (one value per line, as NDJSON and WebSocket messages are shown)."""
    try:
        json.loads(block.code)
    except ValueError as whole:
        for number, line in enumerate(block.code.splitlines()):
            try:
                if line.strip():
                    json.loads(line)
            except ValueError as error:
                return [
                    f"{block.where}: json that does not parse as a whole ({whole}) nor line by line "
                    f"(line {number + 1}: {error}):\n{block.code}"
                ]
    return []


def toml_problems(block: Block) -> list[str]:
    try:
        values = tomllib.loads(block.code)
    except tomllib.TOMLDecodeError as error:
        return [f"{block.where}: toml that does not parse ({error}):\n{block.code}"]
    if not set(values) <= set(Settings.model_fields):
        return []  # not a modelwire.toml (a pyproject.toml snippet, say)
    saved = {key: os.environ.pop(key) for key in list(os.environ) if key.startswith("MODELWIRE_")}
    try:
        with tempfile.TemporaryDirectory() as folder:
            config = Path(folder) / "modelwire.toml"
            config.write_text(block.code)
            Settings(config=str(config), data_dir=Path(folder))
    except Exception as error:
        return [f"{block.where}: a modelwire.toml that Settings refuses: {error}"]
    finally:
        os.environ.update(saved)
    return []


@pytest.fixture
def doc_server(trained_data_dir: Path, tmp_path: Path) -> Iterator[tuple[ThreadedServer, Path, Path]]:
    """A real server whose data dir is HOME's default one; the session folder and HOME."""
    home = tmp_path / "home"
    data_dir = home / ".local" / "share" / "modelwire"
    shutil.copytree(trained_data_dir, data_dir)
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / ".venv").symlink_to(VENV_BIN.parent)  # docs written from a checkout say .venv/bin/modelwire
    server = ThreadedServer(Settings(host="127.0.0.1", http_port=0, grpc_port=0, data_dir=data_dir))
    try:
        server.start()
        yield server, home, folder
    finally:
        server.stop()


def session_env(home: Path, server: ThreadedServer) -> dict[str, str]:
    dropped = ("MODELWIRE_", "XDG_", "PYTHON", "VIRTUAL_ENV")
    env = {key: value for key, value in os.environ.items() if not key.startswith(dropped)}
    env.update(
        {
            "HOME": str(home),
            "PATH": f"{VENV_BIN}{os.pathsep}{env.get('PATH', '/usr/bin:/bin')}",
            "VIRTUAL_ENV": str(VENV_BIN.parent),
            "MODELWIRE_URL": server.http_url,
            "NO_COLOR": "1",
            "COLUMNS": "120",
            "PIP_NO_INDEX": "1",  # no download in a test: a block that installs from PyPI is not-run
            "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        }
    )
    return env


@pytest.mark.parametrize("path", RUNNABLE, ids=names(RUNNABLE))
def test_the_blocks_run(
    path: Path, request: pytest.FixtureRequest, capsys: pytest.CaptureFixture[str]
) -> None:
    blocks = [block for block in parse(path) if block.kind in {"shell", "python"}]
    runnable = [block for block in blocks if block.not_run is None]
    with capsys.disabled():
        for block in blocks:
            if block.not_run:
                where = f"{path.relative_to(ROOT)}:{block.line} ({block.lang})"
                print(f"\n  not run: {where}: {block.not_run}", end="")
    if not runnable:
        return  # every block is marked not-run, each with its reason (checked above)
    server, home, folder = request.getfixturevalue("doc_server")
    assert server.server is not None
    ports = port_map(runnable, server.server.http_port, server.server.grpc_port)
    for outcome in run_session(runnable, folder, session_env(home, server), ports):
        if not outcome.finished:
            pytest.fail(outcome.report(ROOT, "did not run to its end"), pytrace=False)
        shown = outcome.block.expected_output()
        missing = matches(shown, outcome.stdout)
        if missing is not None:
            why = (
                f"does not print what it shows: no line matching {shown[missing]!r} after the lines "
                f"before it (shown line {missing + 1} of {len(shown)})"
            )
            pytest.fail(outcome.report(ROOT, why), pytrace=False)
