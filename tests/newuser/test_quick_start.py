"""A new user's first hour, as README.md tells it, end to end from a clean clone (issue 13, §2).

``git clone`` of this repository's HEAD into a temporary folder (so only what is committed counts: a file
the README needs but git does not have fails here), then, as subprocesses in that clone: ``modelwire serve``,
``curl /predict``, the CLI over REST and over gRPC, the user's own model served from their working
directory (``mypackage/models.py`` is the README's own block), a job submitted and read back by a unique id
prefix, the dashboard and ``/docs`` in headless Chromium with the network closed, and SIGTERM.

Two shortcuts, to keep it offline and inside the suite's time: the clone runs on the EXISTING test venv's
python and scripts (``.venv`` in the clone links to it, and ``PYTHONPATH`` puts the clone's ``src`` first,
so the clone's code is what runs; no network install), and the data dir starts as a copy of the session's
trained one (no 10-60 s training: ``tests/cli/test_train.py`` and the session fixture train for real).
Ports are the kernel's (``--http-port 0``), read back from the ready line the README describes.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Route, expect, sync_playwright

from tests.dashboard.conftest import CHROMIUM, CHROMIUM_ARGS, LOOPBACK, save_artifact
from tests.docs.blocks import file_named, parse
from tests.required import unavailable

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent
READY = re.compile(r"modelwire ready: REST (http://127\.0\.0\.1:\d+)\s+gRPC (127\.0\.0\.1:\d+).*dashboard")
WAIT_S = 60.0

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


class Process:
    """A subprocess whose merged output is read line by line on a thread; waits are bounded."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        self.args = args
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self.process = subprocess.Popen(
            args,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float = WAIT_S) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if found := pattern.search(line):
                return found
        raise AssertionError(f"{self.args} printed no line matching {pattern.pattern!r}:\n" + self.tail())

    def tail(self) -> str:
        return "\n".join(self.lines[-40:])

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM, then the exit status (bounded); killed if it does not stop in time."""
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            message = f"{self.args} did not stop within {timeout} s of SIGTERM:\n{self.tail()}"
            raise AssertionError(message) from None

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)

    def close(self) -> None:
        self.kill()
        self._reader.join(10)
        if self.process.stdout is not None:
            self.process.stdout.close()


def run(args: list[str], cwd: Path, env: dict[str, str], timeout: float = WAIT_S) -> str:
    done = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f"{args} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    target = tmp_path / "modelwire"
    subprocess.run(
        ["git", "clone", "--quiet", "--no-hardlinks", str(ROOT), str(target)], check=True, timeout=WAIT_S
    )
    (target / ".venv").symlink_to(VENV)  # the existing venv: no network install (module docstring)
    return target


@pytest.fixture
def env(clone: Path, trained_data_dir: Path, tmp_path: Path) -> dict[str, str]:
    data_dir = tmp_path / "data"
    shutil.copytree(trained_data_dir, data_dir)
    values = {k: v for k, v in os.environ.items() if not k.startswith(("MODELWIRE_", "PYTHON", "XDG_"))}
    values.update(
        {
            "PATH": f"{clone / '.venv' / 'bin'}{os.pathsep}{values.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(clone / "src"),  # the clone's code, not the checkout the venv was made from
            "HOME": str(tmp_path / "home"),
            "MODELWIRE_DATA_DIR": str(data_dir),
            "NO_COLOR": "1",
        }
    )
    return values


@pytest.fixture
def processes() -> Iterator[list[Process]]:
    started: list[Process] = []
    try:
        yield started
    finally:
        for process in reversed(started):
            process.close()


def _offline(route: Route) -> None:
    if urlsplit(route.request.url).hostname in LOOPBACK:
        route.continue_()
    else:
        route.abort("internetdisconnected")


def check_pages_in_chromium(http_url: str) -> None:
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: install it with `apt-get install chromium`"
        unavailable(message)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            context = browser.new_context()
            context.route("**/*", _offline)
            page = context.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda error: errors.append(str(error)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.goto(f"{http_url}/")
            expect(page.locator("body")).to_have_attribute("data-live", "ws", timeout=30_000)
            expect(page.locator('[data-testid="models-table"] tr[data-model="sentiment"]')).to_be_visible()
            page.screenshot(path=save_artifact("newuser-dashboard.png"))
            page.goto(f"{http_url}/docs")
            expect(page.locator(".opblock").first).to_be_visible(timeout=30_000)
            expect(page.locator(".info .title")).to_contain_text("modelwire")
            page.screenshot(path=save_artifact("newuser-api-docs.png"))
            assert errors == []
        finally:
            browser.close()


def test_the_readme_quick_start_from_a_clean_clone(
    clone: Path, env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    readme = (clone / "README.md").read_text()
    assert ".venv/bin/modelwire predict" in readme
    modelwire = str(clone / ".venv" / "bin" / "modelwire")

    # scripts/serve's server ("Arguments go to modelwire serve"), on ports the kernel picks.
    server = Process([modelwire, "serve", "--http-port", "0", "--grpc-port", "0"], clone, env)
    processes.append(server)
    ready = server.wait_for(READY)
    http_url, grpc_address = ready.group(1), ready.group(2)
    assert f"{http_url}/docs" in server.lines[-1]
    assert f"{http_url}/metrics" in server.lines[-1]

    # "Then, from another shell": the README's curl, and its shown answer.
    answer = run(
        ["curl", "-s", f"{http_url}/predict", "-H", "content-type: application/json",
         "-d", '{"text": "I love this product"}'],
        clone, env,
    )  # fmt: skip
    assert f"# -> {answer}\n" in readme, f"the README shows another answer than {answer}"
    assert answer.startswith('{"sentiment":"positive","confidence":0.')
    assert answer in readme
    over_rest = run([modelwire, "predict", "I love this product", "--url", http_url], clone, env)
    grpc_url = f"grpc://{grpc_address}"
    over_grpc = run([modelwire, "predict", "I love this product", "--url", grpc_url], clone, env)
    assert over_rest == over_grpc
    assert f"# -> {over_rest}" in readme, f"the README shows another answer than {over_rest}"

    # A job: submitted from a file, waited for, then read by a unique prefix of its id.
    project = tmp_path / "project"
    project.mkdir()
    (project / "reviews.csv").write_text("text\nI love this product\nTerrible, a waste of money\n")
    job_env = {**env, "MODELWIRE_URL": http_url}
    submitted = run([modelwire, "jobs", "submit", "reviews.csv", "--wait", "--json"], project, job_env)
    job_id = re.search(r'"id": "([0-9a-f]{32})"', submitted)
    assert job_id is not None, submitted
    assert '"status": "succeeded"' in submitted
    status = run([modelwire, "jobs", "status", job_id.group(1)[:8]], project, job_env)
    assert "succeeded" in status
    results = run([modelwire, "jobs", "results", job_id.group(1)], project, job_env).splitlines()
    assert [json.loads(line)["sentiment"] for line in results] == ["positive", "negative"]

    # The dashboard and /docs, in a browser with no network.
    check_pages_in_chromium(http_url)

    # Ctrl-C / SIGTERM: in-flight requests finish, then it exits 0.
    assert server.terminate() == 0, server.tail()

    # The user's own model, from their working directory: the README's mypackage/models.py, as written.
    [shout] = [b for b in parse(clone / "README.md") if b.lang == "python" and file_named(b)]
    models = project / str(file_named(shout))
    models.parent.mkdir(parents=True)
    models.write_text(shout.code)
    own = Process(
        [modelwire, "serve", "mypackage.models:Shout", "--http-port", "0", "--grpc-port", "0"], project, env
    )
    processes.append(own)
    own_url = own.wait_for(READY).group(1)
    shouted = run([modelwire, "predict", "hello", "--model", "shout", "--url", own_url], project, env)
    assert shouted == '{"shout": "HELLO!"}\n'
    assert own.terminate() == 0, own.tail()
