"""verify over a real SSH connection (loopback sshd): same answer as @local, one command."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import run_cli
from tests.sshd import SshServer

pytestmark = pytest.mark.host


def _statuses(document: dict[str, Any]) -> dict[str, str]:
    [host] = document["hosts"]
    return {setting["key"]: setting["status"] for setting in host["settings"]}


def test_verify_over_ssh_matches_local_in_one_command(sshd: SshServer, tmp_path: Path) -> None:
    inventory = sshd.inventory(tmp_path)
    remote = run_cli("verify", "-p", "network-latency", "--format", "json", str(inventory))
    local = run_cli("verify", "-p", "network-latency", "--format", "json", "@local")
    assert remote.returncode in (0, 1), remote.stderr
    assert remote.json()["hosts"][0]["host"] == "loopback"
    assert _statuses(remote.json()) == _statuses(local.json())
    assert sshd.logins() == 1
    assert sshd.commands_run() == 1


def test_unreachable_host_is_reported_with_exit_3(tmp_path: Path, root_only: None) -> None:
    inventory = tmp_path / "dead.py"
    # Port 9 (discard) on loopback: nothing listens, the connection is refused at once.
    inventory.write_text('hosts = [("dead", {"ssh_hostname": "127.0.0.1", "ssh_port": 9})]\n')
    result = run_cli("verify", "-p", "network-latency", "--format", "json", str(inventory))
    assert result.returncode == 3
    [host] = result.json()["hosts"]
    assert host["status"] == "unreachable"
    assert "unreachable" in host["error"]
