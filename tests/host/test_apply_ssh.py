"""plan and apply over a real SSH connection (loopback sshd): what they cost in commands.

The loopback sshd logs every session it opens for a command, so the count is what really
reached the host: ``plan`` reads each host once (the bundle), and an ``apply`` with nothing to
do is that same single read. A real apply's count is printed (run with ``-s``) and recorded
as the test's ``apply_commands`` property (``--junitxml``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from quietcore.converge import paths
from tests.conftest import CliResult, run_cli
from tests.host.apply_support import (
    POOL_2M_NODE0,
    MemoryKnobs,
    Pristine,
    assert_rolled_back,
    memory_knobs_restored,
    pristine_host,
    read_int,
    thp_mode,
)
from tests.sshd import SshServer

pytestmark = pytest.mark.host


@pytest.fixture
def memory(root_only: None, state_dir: Path) -> Iterator[tuple[Pristine, MemoryKnobs]]:
    with pristine_host() as start, memory_knobs_restored() as saved:
        yield start, saved


class Counted:
    """Runs the CLI and says how many commands each run started on the sshd."""

    def __init__(self, server: SshServer) -> None:
        self.server = server

    def __call__(self, *args: str) -> tuple[CliResult, int]:
        before = self.server.commands_run()
        result = run_cli(*args)
        return result, self.server.commands_run() - before


def test_plan_costs_one_command_per_host(sshd: SshServer, state_dir: Path, tmp_path: Path) -> None:
    counted = Counted(sshd)
    one = sshd.inventory(tmp_path, "loopback")
    two = sshd.inventory(tmp_path, "loopback-again")

    result, commands = counted("plan", "-p", "network-latency", "--json", str(one))
    assert result.returncode in (0, 1, 2), result.stderr
    [host] = result.json()["hosts"]
    assert host["host"] == "loopback"
    assert host["error"] is None
    assert commands == 1

    result, commands = counted("plan", "-p", "network-latency", "--json", str(one), str(two))
    assert [h["host"] for h in result.json()["hosts"]] == ["loopback", "loopback-again"]
    assert commands == 2
    assert not Path(paths.SNAPSHOT).exists()


def test_noop_apply_costs_one_command_and_a_real_one_is_counted(
    sshd: SshServer,
    memory: tuple[Pristine, MemoryKnobs],
    state_dir: Path,
    tmp_path: Path,
    record_property: Callable[[str, object], None],
) -> None:
    start, saved = memory
    thp = "never" if saved.thp != "never" else "madvise"
    count = saved.pool_node0 + 2
    profile = tmp_path / "ssh.yaml"
    profile.write_text(
        "name: qc-host-ssh\n"
        f"memory: {{thp: {thp}}}\n"
        f"hugepages: {{pages: [{{size: 2M, count: {count}, node: 0}}]}}\n"
    )
    inventory = str(sshd.inventory(tmp_path, "loopback"))
    counted = Counted(sshd)
    applied = False
    try:
        result, plan_commands = counted("plan", "-p", str(profile), "--json", inventory)
        assert result.returncode == 1, result.stderr
        assert result.json()["hosts"][0]["action_count"] == 5
        assert plan_commands == 1

        result, apply_commands = counted("apply", "-p", str(profile), "--yes", "--json", inventory)
        applied = True
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.json()["changed"] == 5
        assert (thp_mode(), read_int(POOL_2M_NODE0)) == (thp, count)
        record_property("apply_commands", apply_commands)
        print(f"\nreal apply over SSH: {apply_commands} commands")
        # The read, the snapshot, one per family (vm, hugepages, boot), the controller's
        # copy and the verification read: 7 on this machine; more is a round trip too many.
        assert apply_commands <= 7

        result, noop_commands = counted("apply", "-p", str(profile), "--yes", "--json", inventory)
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.json()["changed"] == 0
        assert noop_commands == 1

        result, replan_commands = counted("plan", "-p", str(profile), "--json", inventory)
        assert result.returncode == 0, result.stdout + result.stderr
        assert replan_commands == 1

        result, rollback_commands = counted("rollback", "--yes", "--json", inventory)
        applied = Path(paths.SNAPSHOT).exists()
        assert result.returncode == 0, result.stdout + result.stderr
        record_property("rollback_commands", rollback_commands)
        print(f"rollback over SSH: {rollback_commands} commands")
        # Two reads (the snapshot, then what it names), one per family, the state cleanup,
        # the controller's copy and the check read: 8.
        assert rollback_commands <= 8
        assert MemoryKnobs.now() == saved
    finally:
        if applied:
            run_cli("rollback", "--yes", inventory)
    keys = ["vm/thp_enabled", "hugepages/node0/2048kB"]
    assert_rolled_back(start, keys, state_dir, host="loopback", profile="qc-host-ssh")
