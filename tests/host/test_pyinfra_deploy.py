"""The plain pyinfra CLI runs quietcore's verify deploy with the same read and comparison."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import run_cli

pytestmark = pytest.mark.host
ROOT = Path(__file__).parents[2]


def test_pyinfra_cli_verify_deploy_reports_the_same_drift(root_only: None) -> None:
    pyinfra = Path(sys.executable).parent / "pyinfra"
    done = subprocess.run(
        [
            str(pyinfra),
            str(ROOT / "inventory" / "local.py"),
            str(ROOT / "deploys" / "verify.py"),
            "--data",
            "profile=network-latency",
            "-y",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    logged = done.stdout + done.stderr
    ours = run_cli("verify", "-p", "network-latency", "--format", "json", "@local").json()
    [host] = ours["hosts"]
    assert f"profile network-latency: {host['status']}" in logged
    for setting in host["settings"]:
        if setting["status"] != "ok":
            assert f"{setting['status']} {setting['key']}:" in logged
