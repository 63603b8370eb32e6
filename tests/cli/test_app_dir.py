"""``--app-dir`` (default ``.``): the installed ``modelwire`` script imports the user's models from the
working directory, as uvicorn, granian and ``bentoml serve`` do (issue 13, item 1)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import httpx
import pytest

SCRIPT = Path(sys.executable).with_name("modelwire")
SHOUT = textwrap.dedent(
    """
    from modelwire import Datatype, Model, TensorSpec

    class Shout(Model):
        inputs = (TensorSpec("text", Datatype.BYTES),)
        outputs = (TensorSpec("shout", Datatype.BYTES),)

        def load(self):
            self.suffix = "!"

        def predict(self, batch):
            return [{"shout": text.upper() + self.suffix} for text in batch]
    """
)
READY = r"modelwire ready: REST http://127\.0\.0\.1:(\d+)"


def _package(root: Path) -> None:
    (root / "mypackage").mkdir(parents=True)
    (root / "mypackage" / "__init__.py").write_text("")
    (root / "mypackage" / "models.py").write_text(SHOUT)


def _serve(cwd: Path, log: Path, *args: str) -> tuple[subprocess.Popen[bytes], int]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELWIRE_") and k != "PYTHONPATH"}
    env.update({"NO_COLOR": "1", "PYTHONUNBUFFERED": "1"})
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [str(SCRIPT), "serve", *args, "--http-port", "0", "--grpc-port", "0"],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if found := re.search(READY, log.read_text(errors="replace")):
            return proc, int(found.group(1))
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    _stop(proc)
    raise AssertionError(f"not ready (exit {proc.poll()}):\n{log.read_text(errors='replace')[-3000:]}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.mark.skipif(
    not SCRIPT.exists() and not os.environ.get("CI"),
    reason="no modelwire script next to this interpreter (scripts/test installs it; CI requires it)",
)
@pytest.mark.parametrize("where", ["cwd", "app-dir"])
def test_installed_script_serves_a_model_from_the_app_dir(tmp_path: Path, where: str) -> None:
    project = tmp_path / "project"
    _package(project)
    args = ["mypackage.models:Shout", "--data-dir", str(tmp_path / "data")]
    cwd = project
    if where == "app-dir":  # started elsewhere, told where the package is
        cwd = tmp_path
        args += ["--app-dir", "project"]
    proc, port = _serve(cwd, tmp_path / "serve.log", *args)
    try:
        log = (tmp_path / "serve.log").read_text().splitlines()
        ready = next(line for line in log if "modelwire ready" in line)
        base = f"http://127.0.0.1:{port}"  # the ready line says where a person looks next
        assert f"dashboard {base}/  API docs {base}/docs  metrics {base}/metrics" in ready, ready
        url = f"http://127.0.0.1:{port}/v1/models/shout/predict"
        answer = httpx.post(url, json={"text": "hi"}, timeout=10)
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"shout": "HI!"}
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_run_takes_app_dir() -> None:
    from modelwire.cli.main import build_settings

    assert build_settings(app_dir="models").app_dir == Path("models")
    assert build_settings().app_dir == Path(".")
