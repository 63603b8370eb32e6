"""deploy/systemd/: the plain-hosts alternative. systemd itself checks the units (`systemd-analyze verify`,
offline); we check the flags are real, the stop timeout outlasts the drain, and the settings are known."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelwire.settings import Settings
from tests.deploy.conftest import ROOT, command_flags

SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = sorted(SYSTEMD.glob("*.service"))


def _env_file() -> dict[str, str]:
    lines = (SYSTEMD / "modelwire.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def _service(unit: Path) -> dict[str, list[str]]:
    """The [Service] section's keys (a key may repeat)."""
    out: dict[str, list[str]] = {}
    section = ""
    for line in unit.read_text().splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, value = line.split("=", 1)
            out.setdefault(key, []).append(value)
    return out


def test_there_is_a_unit_per_role() -> None:
    assert {u.name for u in UNITS} == {
        "modelwire-gateway.service",
        "modelwire-model@.service",
        "modelwire-worker.service",
    }


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_exec_start_uses_real_flags(unit: Path) -> None:
    (exec_start,) = _service(unit)["ExecStart"]
    argv = shlex.split(exec_start)
    assert argv[0] == "/opt/modelwire/bin/modelwire"  # the Dockerfile's virtualenv, the same layout
    flags = {arg for arg in argv[2:] if arg.startswith("--")}
    assert flags <= command_flags(argv[1]), (
        f"`modelwire {argv[1]}` has no {sorted(flags - command_flags(argv[1]))}"
    )


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_stop_timeout_outlasts_the_drain(unit: Path) -> None:
    service = _service(unit)
    assert service["KillSignal"] == ["SIGTERM"]
    assert float(service["TimeoutStopSec"][0]) > float(_env_file()["MODELWIRE_LIMITS__SHUTDOWN_GRACE_S"])


@pytest.mark.parametrize("unit", UNITS, ids=lambda u: u.name)
def test_unit_settings_are_real_settings(unit: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("MODELWIRE_"):
            monkeypatch.delenv(key)
    env = _env_file()
    for line in _service(unit).get("Environment", []):
        env |= dict(item.split("=", 1) for item in shlex.split(line))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings()  # an unknown MODELWIRE_SECTION__KEY raises (extra="forbid")
    assert settings.limits.shutdown_grace_s == 30.0


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed")
def test_systemd_accepts_the_units(tmp_path: Path) -> None:
    """`systemd-analyze verify` with the paths pointed at this checkout (it checks ExecStart exists)."""
    modelwire = Path(sys.executable).parent / "modelwire"
    names = []
    for unit in UNITS:
        text = unit.read_text().replace("/opt/modelwire/bin/modelwire", str(modelwire))
        text = text.replace("/etc/modelwire/modelwire.env", str(SYSTEMD / "modelwire.env"))
        name = unit.name.replace("@.service", "@8001.service")
        (tmp_path / name).write_text(text)
        names.append(f"./{name}")
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", *names],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # unknown keys are only warnings: none allowed
