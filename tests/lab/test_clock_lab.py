"""Clock health against the real chrony in the lab. The lab image gives chrony a real NTP
source (a free-running chronyd serving on loopback, see ``quietcore.lab.recipe``), so the
system chronyd synchronises within seconds of boot; stopping it shows the daemon absent.
The clocksource and TSC verdicts are compared with what the guest's sysfs and CPU flags say."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import CliResult, run_cli
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

SYNCED = "chronyc -n tracking | grep -q '^Leap status *: Normal'"
OFFSET = re.compile(r"^offset [+-]([0-9]+\.[0-9]+) us, synchronised$")


def _wait_synchronised(lab: Lab, within_s: float = 60) -> None:
    deadline = time.monotonic() + within_s
    while lab_status(lab, SYNCED) != 0:
        assert time.monotonic() < deadline, lab.ssh("chronyc -n tracking; true")
        time.sleep(1)


def lab_status(lab: Lab, script: str) -> int:
    return run_cli("lab", "ssh", lab.name, "--", script, timeout=120).returncode


def _verify(lab: Lab, tmp_path: Path, clock: dict[str, Any]) -> tuple[CliResult, dict[str, Any]]:
    """verify with a profile of only ``verify.clock``: its settings by key. The exit status is
    checked against them: 1 exactly when one is drift or missing."""
    path = tmp_path / "clock.yaml"
    path.write_text(yaml.safe_dump({"name": "clock-lab", "verify": {"clock": clock}}))
    result = run_cli("verify", "-p", str(path), "--format", "json", str(lab.inventory), timeout=600)
    [host] = result.json()["hosts"]
    settings = {s["key"]: s for s in host["settings"]}
    assert all(key.startswith("clock/") for key in settings)
    failing = any(s["status"] in ("drift", "missing") for s in settings.values())
    assert result.returncode == (1 if failing else 0), result.stdout
    return result, settings


@pytest.fixture
def chrony(lab_vm: Lab) -> Iterator[Lab]:
    """The lab with chrony synchronised before and after each test (tests stop it)."""
    _wait_synchronised(lab_vm)
    try:
        yield lab_vm
    finally:
        lab_vm.ssh("systemctl start chrony")
        _wait_synchronised(lab_vm)


def test_synchronised_chrony_is_ok(chrony: Lab, tmp_path: Path) -> None:
    # 1 ms: far above what chrony keeps on loopback (tens of microseconds under TCG).
    _, seen = _verify(chrony, tmp_path, {"max_offset_us": 1000})
    assert seen["clock/chrony"]["status"] == "ok", seen["clock/chrony"]
    assert OFFSET.fullmatch(seen["clock/chrony"]["actual"])
    assert "reference 127.0.0.1" in seen["clock/chrony"]["reason"]
    for daemon in ("ptp4l", "phc2sys"):
        assert (seen[f"clock/{daemon}"]["status"], seen[f"clock/{daemon}"]["reason"]) == (
            "unsupported",
            f"{daemon} not running",
        )


def test_a_tiny_limit_is_drift_naming_the_measured_offset(chrony: Lab, tmp_path: Path) -> None:
    # 0.1 ns: below chronyc's resolution (1 ns), so only an offset of exactly 0 would pass;
    # such a reading is ok by definition, so a few are taken until one is not zero.
    for _ in range(5):
        result, seen = _verify(chrony, tmp_path, {"max_offset_us": 0.0001})
        offset = OFFSET.fullmatch(seen["clock/chrony"]["actual"] or "")
        assert offset, seen["clock/chrony"]
        if float(offset.group(1)) > 0:
            break
    assert result.returncode == 1, result.stdout
    assert seen["clock/chrony"]["status"] == "drift"
    assert seen["clock/chrony"]["desired"] == "|offset| <= 0.0001 us, synchronised"


def test_stopped_chrony_is_unsupported_unless_required(chrony: Lab, tmp_path: Path) -> None:
    chrony.ssh("systemctl stop chrony")
    _, seen = _verify(chrony, tmp_path, {})
    assert seen["clock/chrony"]["status"] == "unsupported"
    assert seen["clock/chrony"]["reason"].startswith("chronyd not running")

    result, seen = _verify(chrony, tmp_path, {"require": ["chrony"]})
    assert result.returncode == 1, result.stdout
    assert seen["clock/chrony"]["status"] == "missing"
    assert "verify.clock.require lists chrony" in seen["clock/chrony"]["reason"]


def test_clocksource_and_tsc_as_the_guest_has_them(lab_vm: Lab, tmp_path: Path) -> None:
    sysfs = "/sys/devices/system/clocksource/clocksource0"
    current = lab_vm.ssh(f"cat {sysfs}/current_clocksource").strip()
    available = lab_vm.ssh(f"cat {sysfs}/available_clocksource").split()
    flags = set(lab_vm.ssh("grep -m1 '^flags' /proc/cpuinfo").split())
    _, seen = _verify(lab_vm, tmp_path, {})

    clocksource = seen["clock/clocksource"]
    assert clocksource["actual"] == current
    assert clocksource["status"] == ("ok" if current == "tsc" else "drift")
    if "tsc" not in available:  # the default lab: TSC marked unstable under TCG
        assert f"available: {' '.join(available)}" in clocksource["reason"]
    tsc = seen["clock/tsc_stable"]
    invariant = {"constant_tsc", "nonstop_tsc"} <= flags
    assert tsc["status"] == ("ok" if invariant else "unsupported"), tsc  # a guest: unsupported
    assert "hypervisor" in flags
