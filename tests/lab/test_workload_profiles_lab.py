"""Issue 9's acceptance for the workload profiles on the 4-CPU, 2-node lab: each of
postgres-host, redis-host, api-gateway and market-data applies (``--reboot if-needed``),
verifies with zero drift, and rolls back to exactly what the lab had.

Ordered to reboot as little as possible: the three profiles that change nothing at boot run
first (no reboot at all), then market-data, whose kernel arguments (from network-latency) take
one reboot to apply and one to roll back. Each profile leaves the lab as it found it, so the
order between them does not matter otherwise.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.conftest import CliResult, run_cli
from tests.lab.conftest import Lab, timed_cli

pytestmark = [pytest.mark.lab, pytest.mark.usefixtures("state_dir")]

NO_REBOOT = ("postgres-host", "redis-host", "api-gateway")
VERIFY_TIMEOUT = 600
# Read-only health checks (the clock family): nothing sets them, and a time daemon's offset
# moves between two reads, so "as found" compares every other key.
READ_ONLY_FAMILIES = ("clock",)


def _verify(lab: Lab, name: str) -> tuple[int, list[dict[str, Any]]]:
    result = run_cli(
        "verify", "--profile", name, "--format", "json", str(lab.inventory), timeout=VERIFY_TIMEOUT
    )
    assert result.returncode in (0, 1), result.stdout + result.stderr
    [host] = result.json()["hosts"]
    assert host["error"] is None, host["error"]
    return result.returncode, host["settings"]


def _converge(lab: Lab, what: str, *command: str) -> CliResult:
    """``quietcore COMMAND --reboot if-needed --yes --json`` on the lab."""
    sys.stderr.write(f"\n[timing] {what}:")
    return timed_cli(*command, "--reboot", "if-needed", "--yes", "--json", str(lab.inventory))


def _host(result: CliResult) -> dict[str, Any]:
    assert result.returncode == 0, result.stdout + result.stderr
    [host] = result.json()["hosts"]
    return dict(host)


def _not_ok(settings: list[dict[str, Any]]) -> list[str]:
    return [
        f"{s['key']}: {s['status']} ({s['actual']!r}, want {s['desired']!r}) {s['reason'] or ''}"
        for s in settings
        if s["status"] in ("drift", "missing")
    ]


def _actuals(settings: list[dict[str, Any]]) -> dict[str, str | None]:
    return {s["key"]: s["actual"] for s in settings if s["family"] not in READ_ONLY_FAMILIES}


def _boot_id(lab: Lab) -> str:
    return lab.ssh("cat /proc/sys/kernel/random/boot_id").strip()


def _apply_verify_rollback(lab: Lab, name: str, *, reboots: bool) -> dict[str, str]:
    """Apply, verify, roll back (whatever the verify found, so the lab is left as found) and
    check nothing changed; the applied verify's statuses."""
    _, found = _verify(lab, name)
    boot_id = _boot_id(lab)
    applied = _converge(lab, f"{name} apply", "apply", "--profile", name)
    try:
        host = _host(applied)
        assert host["status"] == "ok" and host["changes"] > 0, host
        assert host["rebooted"] is reboots
        assert (_boot_id(lab) != boot_id) is reboots
        code, settings = _verify(lab, name)
        assert _not_ok(settings) == []
        assert code == 0
    finally:
        rolled = _host(_converge(lab, f"{name} rollback", "rollback"))
    assert rolled["not_restored"] == [] and rolled["rebooted"] is reboots
    _, after = _verify(lab, name)
    assert _actuals(after) == _actuals(found)
    assert lab.ssh("ls /etc/quietcore /etc/sysctl.d/zz-quietcore.conf 2>/dev/null || :") == ""
    return {s["key"]: s["status"] for s in settings}


@pytest.mark.parametrize("name", NO_REBOOT)
def test_profile_applies_without_reboot_verifies_and_rolls_back(lab_vm: Lab, name: str) -> None:
    _apply_verify_rollback(lab_vm, name, reboots=False)


def test_api_gateway_gives_new_services_its_open_file_limit(lab_vm: Lab) -> None:
    # The limit reaches services through systemd, right after apply (daemon-reload, no reboot):
    # a unit started now has it, and after rollback one started again has systemd's default.
    inventory = str(lab_vm.inventory)
    probe = "systemd-run --wait --pipe --quiet sh -c 'ulimit -Sn; ulimit -Hn'"
    applied = run_cli(
        "apply", "--profile", "api-gateway", "--reboot", "never", "--yes", inventory, timeout=600
    )
    try:
        assert applied.returncode == 0, applied.stdout + applied.stderr
        assert lab_vm.ssh(probe).split() == ["524288", "524288"]
    finally:
        rolled = run_cli("rollback", "--yes", inventory, timeout=600)
    assert rolled.returncode == 0, rolled.stdout + rolled.stderr
    assert lab_vm.ssh(probe).split() == ["1024", "524288"]


def test_market_data_reboots_verifies_the_clock_and_rolls_back(lab_vm: Lab) -> None:
    statuses = _apply_verify_rollback(lab_vm, "market-data", reboots=True)
    # tsc=reliable (network-latency) made the TSC the clocksource; chrony, synchronised in the
    # lab, is within verify.clock.max_offset_us. TCG has no invariant TSC: that is unsupported.
    assert statuses["clock/clocksource"] == "ok"
    assert statuses["clock/chrony"] == "ok"
    # Coalescing: virtio_net has rx/tx-usecs 0 already and no adaptive moderation to switch.
    assert statuses["nic/enp0s3/coalesce/rx-usecs"] == "ok"
    assert statuses["nic/enp0s3/coalesce/adaptive-rx"] == "unsupported"
    assert statuses["nic/enp0s3/rx-3/rps_cpus"] == "ok"
    assert "tsc=reliable" not in lab_vm.ssh("cat /proc/cmdline").split()
