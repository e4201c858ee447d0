"""The clock family on real captures (tests/data/clock/README.md): chronyc from the lab in its
three states, ptp4l's management answers from two ptp4l instances on a veth pair, and the
clocksource files of the lab (TSC marked unstable) and of this machine (TSC in use)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from tests.unit.knob_hosts import context, profile, results, synthetic_host

from quietcore.knobs.clock import (
    AVAILABLE,
    CHRONY_COMMAND,
    CHRONY_KEY,
    CLOCKSOURCE_KEY,
    CURRENT,
    PHC2SYS_KEY,
    PTP4L_KEY,
    PTP_COMMAND,
    TSC_KEY,
    ClockKnob,
    offset_within,
    parse_ptp,
    parse_tracking,
    ptp4l_state,
)
from quietcore.knobs.node_check import NodeCheck, Unchecked
from quietcore.knobs.registry import family
from quietcore.readings import CommandResult, Readings
from quietcore.steps import UnsafeStepError, Write
from quietcore.topology import Topology

DATA = Path(__file__).resolve().parents[1] / "data" / "clock"
KNOB = ClockKnob()
METAL = synthetic_host(cpus=2, nodes=1, flags=frozenset({"tsc", "constant_tsc", "nonstop_tsc"}))
# The lab under TCG: a guest whose CPU has a TSC but neither invariant-TSC flag.
LAB_GUEST = dataclasses.replace(METAL, flags=frozenset({"tsc", "hypervisor"}), hypervisor="qemu")
# The clocksource files as read on the lab (TSC marked unstable) and on this machine.
LAB_SYSFS = {CURRENT: ("hpet",), AVAILABLE: ("hpet acpi_pm ",)}
THIS_MACHINE_SYSFS = {CURRENT: ("tsc",), AVAILABLE: ("tsc kvm-clock ",)}


def captured(name: str) -> CommandResult:
    """A capture; a last line ``rc=N`` is the exit status the capture command recorded."""
    lines = tuple(DATA.joinpath(name).read_text().splitlines())
    if lines and lines[-1].startswith("rc="):
        return CommandResult(lines[:-1], int(lines[-1].removeprefix("rc=")))
    return CommandResult(lines, 0)


def host_readings(
    chrony: str = "chronyc-c-tracking-synchronised.txt",
    ptp: str = "ptp-state-stopped.txt",
    sysfs: Mapping[str, tuple[str, ...]] | None = None,
) -> Readings:
    return Readings(
        LAB_SYSFS if sysfs is None else sysfs,
        {CHRONY_COMMAND[0]: captured(chrony), PTP_COMMAND[0]: captured(ptp)},
    )


def clock_verdicts(
    clock: dict[str, Any], readings: Readings, topology: Topology = LAB_GUEST
) -> dict[str, tuple[str, str | None, str]]:
    settings = KNOB.desired(context(profile(verify={"clock": clock}), topology))
    return {
        key: (r.status, r.actual, r.reason)
        for key, r in results(settings, readings, topology).items()
    }


# --- chrony ---------------------------------------------------------------------------------------


def test_tracking_synchronised_reads_system_time_as_the_offset() -> None:
    state = parse_tracking(captured("chronyc-c-tracking-synchronised.txt"))
    # System time -0.000022964 s in the CSV: the clock is 22.964 us fast (ahead).
    assert state.synchronised
    assert state.offset_us == pytest.approx(22.964)
    assert state.detail == "reference 127.0.0.1, stratum 9, leap status Normal"
    assert not state.absent


def test_tracking_not_synchronised_and_stopped() -> None:
    unsynced = parse_tracking(captured("chronyc-c-tracking-not-synchronised.txt"))
    assert (unsynced.synchronised, unsynced.offset_us) == (False, 0.0)
    assert "reference 00000000" in unsynced.detail
    stopped = parse_tracking(captured("chronyc-c-tracking-stopped.txt"))
    assert stopped.absent == "chronyd not running (chronyc: 506 Cannot talk to daemon)"
    absent = parse_tracking(CommandResult(("chronyc: not installed",), 127))
    assert absent.absent == "chronyd not running (chronyc is not installed)"


def test_chrony_synchronised_within_the_limit_is_ok() -> None:
    seen = clock_verdicts({"max_offset_us": 100}, host_readings())
    status, actual, reason = seen[CHRONY_KEY]
    assert (status, actual) == ("ok", "offset +22.964 us, synchronised")
    assert "reference 127.0.0.1" in reason


def test_chrony_over_the_limit_is_drift_naming_the_offset() -> None:
    seen = clock_verdicts({"max_offset_us": 10}, host_readings())
    assert seen[CHRONY_KEY][:2] == ("drift", "offset +22.964 us, synchronised")


def test_chrony_not_synchronised_is_drift_even_without_a_limit() -> None:
    seen = clock_verdicts({}, host_readings("chronyc-c-tracking-not-synchronised.txt"))
    assert seen[CHRONY_KEY][:2] == ("drift", "offset +0.000 us, not synchronised")
    assert "Not synchronised" in seen[CHRONY_KEY][2]


def test_chrony_stopped_is_unsupported_unless_required() -> None:
    readings = host_readings("chronyc-c-tracking-stopped.txt")
    assert clock_verdicts({}, readings)[CHRONY_KEY][:2] == ("unsupported", None)
    status, actual, reason = clock_verdicts({"require": ["chrony"]}, readings)[CHRONY_KEY]
    assert (status, actual) == ("missing", None)
    assert reason.endswith("and verify.clock.require lists chrony")


def test_a_required_daemon_is_declared_by_require() -> None:
    settings = KNOB.desired(context(profile(verify={"clock": {"require": ["chrony"]}}), METAL))
    fields = {s.key: s.field for s in settings}
    assert fields[CHRONY_KEY] == "verify.clock.require"
    assert fields[PTP4L_KEY] == "verify.clock"


# --- ptp4l and phc2sys ----------------------------------------------------------------------------


def test_ptp4l_with_a_grandmaster_still_calibrating() -> None:
    state = parse_ptp(captured("ptp-state-slave.txt"))
    assert not state.phc2sys_running
    assert state.ptp4l.offset_us == pytest.approx(0.050)
    assert state.ptp4l.detail == "grandmaster 8e4831.fffe.ccb139, port state UNCALIBRATED"
    assert not state.ptp4l.synchronised  # UNCALIBRATED: the servo has not locked


def test_ptp4l_states_before_a_grandmaster_and_as_the_grandmaster() -> None:
    listening = parse_ptp(captured("ptp-state-listening.txt")).ptp4l
    assert (listening.synchronised, listening.detail) == (
        False,
        "grandmaster none, port state LISTENING",
    )
    master = ptp4l_state(captured("pmc-master.txt").lines)
    assert (master.synchronised, master.detail) == (False, "grandmaster none, port state MASTER")


def test_ptp4l_locked_to_a_grandmaster_is_synchronised() -> None:
    # The captured slave, as it reads once its servo locks (port SLAVE); see the README for
    # why a free-running capture cannot show that state itself.
    lines = [
        line.replace("UNCALIBRATED", "SLAVE") for line in captured("ptp-state-slave.txt").lines
    ]
    assert ptp4l_state(lines).synchronised


def test_ptp4l_verdicts() -> None:
    slave = clock_verdicts({"max_offset_us": 1}, host_readings(ptp="ptp-state-slave.txt"))
    status, actual, reason = slave[PTP4L_KEY]
    assert (status, actual) == ("drift", "offset +0.050 us, not synchronised")
    assert "UNCALIBRATED" in reason
    no_answer = clock_verdicts({}, host_readings(ptp="ptp-state-no-answer.txt"))
    assert no_answer[PTP4L_KEY][0] == "unsupported"
    assert "did not answer pmc" in no_answer[PTP4L_KEY][2]
    stopped = clock_verdicts({"require": ["ptp4l"]}, host_readings())
    assert stopped[PTP4L_KEY][:2] == ("missing", None)
    assert stopped[PHC2SYS_KEY] == ("unsupported", None, "phc2sys not running")


def test_phc2sys_is_checked_to_run() -> None:
    result = captured("ptp-state-stopped.txt")
    running = CommandResult(
        tuple(line.replace("phc2sys=stopped", "phc2sys=running") for line in result.lines), 0
    )
    readings = Readings(LAB_SYSFS, {PTP_COMMAND[0]: running})
    status, actual, reason = clock_verdicts({"require": ["phc2sys"]}, readings)[PHC2SYS_KEY]
    assert (status, actual) == ("ok", "running")
    assert "offset is not read" in reason


# --- judging --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("desired", "actual", "ok"),
    [
        ("|offset| <= 100 us, synchronised", "offset -99.999 us, synchronised", True),
        ("|offset| <= 100 us, synchronised", "offset +100.001 us, synchronised", False),
        ("|offset| <= 0.001 us, synchronised", "offset +0.000 us, synchronised", True),
        ("synchronised", "offset +5000.000 us, synchronised", True),
        ("synchronised", "offset +0.000 us, not synchronised", False),
        ("synchronised", "garbage", False),
    ],
)
def test_offset_within(desired: str, actual: str, ok: bool) -> None:
    assert offset_within(desired, actual) is ok


# --- clocksource and TSC --------------------------------------------------------------------------


def test_lab_clocksource_without_tsc_is_drift_with_the_reason() -> None:
    status, actual, reason = clock_verdicts({}, host_readings())[CLOCKSOURCE_KEY]
    assert (status, actual) == ("drift", "hpet")
    assert "does not offer tsc (available: hpet acpi_pm)" in reason
    assert "tsc=reliable" in reason
    # Nothing to write: the kernel would keep hpet.
    assert KNOB.steps_to_set(CLOCKSOURCE_KEY, "tsc", host_readings(), LAB_GUEST) == ()


def test_clocksource_in_use_is_ok_and_an_available_one_is_written() -> None:
    here = host_readings(sysfs=THIS_MACHINE_SYSFS)
    assert clock_verdicts({}, here, METAL)[CLOCKSOURCE_KEY][:2] == ("ok", "tsc")
    other = host_readings(sysfs={CURRENT: ("kvm-clock",), AVAILABLE: THIS_MACHINE_SYSFS[AVAILABLE]})
    assert clock_verdicts({}, other, METAL)[CLOCKSOURCE_KEY][:2] == ("drift", "kvm-clock")
    assert KNOB.steps_to_set(CLOCKSOURCE_KEY, "tsc", other, METAL) == (Write(CURRENT, "tsc"),)
    # Rollback gives the previous one back.
    assert KNOB.steps_to_set(CLOCKSOURCE_KEY, "kvm-clock", here, METAL) == (
        Write(CURRENT, "kvm-clock"),
    )
    assert KNOB.steps_to_set(CHRONY_KEY, "offset +1.000 us, synchronised", here, METAL) == ()
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(CLOCKSOURCE_KEY, "tsc; reboot", here, METAL)


def test_no_clocksource_files_is_unsupported() -> None:
    seen = clock_verdicts({}, host_readings(sysfs={}))
    assert seen[CLOCKSOURCE_KEY][0] == "unsupported"


def test_invariant_tsc_flags() -> None:
    readings = host_readings()
    assert clock_verdicts({}, readings, METAL)[TSC_KEY][:2] == ("ok", "constant_tsc nonstop_tsc")
    status, actual, reason = clock_verdicts({}, readings, LAB_GUEST)[TSC_KEY]
    assert (status, actual) == ("unsupported", "none")
    assert "qemu hypervisor" in reason
    metal = dataclasses.replace(METAL, flags=frozenset({"tsc", "constant_tsc"}))
    status, actual, reason = clock_verdicts({}, readings, metal)[TSC_KEY]
    assert (status, actual) == ("drift", "constant_tsc")
    assert "lacks nonstop_tsc" in reason
    arm = dataclasses.replace(METAL, flags=frozenset({"fp", "asimd"}))
    assert clock_verdicts({}, readings, arm)[TSC_KEY][0] == "unsupported"


# --- the family's shape ---------------------------------------------------------------------------


def test_keys_reads_and_registry() -> None:
    assert KNOB.reads(profile()).files == ()
    assert KNOB.reads(profile()).commands == ()
    spec = KNOB.reads(profile(verify={"clock": {}}))
    assert spec.files == (CURRENT, AVAILABLE)
    assert spec.commands == (CHRONY_COMMAND, PTP_COMMAND)
    settings = list(KNOB.desired(context(profile(verify={"clock": {"max_offset_us": 50}}), METAL)))
    assert [(s.key, s.desired, s.effect) for s in settings] == [
        (CLOCKSOURCE_KEY, "tsc", False),
        (TSC_KEY, "constant_tsc nonstop_tsc", True),
        # Measured, never set: snapshot and rollback leave the daemons' keys alone.
        (CHRONY_KEY, "|offset| <= 50 us, synchronised", True),
        (PTP4L_KEY, "|offset| <= 50 us, synchronised", True),
        (PHC2SYS_KEY, "running", True),
    ]
    no_source = KNOB.desired(context(profile(verify={"clock": {"clocksource": None}}), METAL))
    assert [s.key for s in no_source] == [CHRONY_KEY, PTP4L_KEY, PHC2SYS_KEY]
    assert family("clock") is not None


def test_node_checks() -> None:
    settings = {s.key: s for s in KNOB.desired(context(profile(verify={"clock": {}}), METAL))}
    check = KNOB.node_check(settings[CLOCKSOURCE_KEY])
    assert isinstance(check, NodeCheck)
    assert (check.path, check.kind, check.desired, check.absent) == (
        CURRENT,
        "exact",
        "tsc",
        "unsupported",
    )
    for key in (TSC_KEY, CHRONY_KEY, PTP4L_KEY, PHC2SYS_KEY):
        assert isinstance(KNOB.node_check(settings[key]), Unchecked)
