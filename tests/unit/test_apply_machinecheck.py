"""Converging ``ignore_ce``: per machine-check device on the lab capture (4 devices, all 0; the
lab's CPUs have mce and mca), for every device present with the all-devices key, and nothing on
the Firecracker VM, which has no device (see tests/data/bundles/README.md)."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import this_vm
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes

from quietcore.knobs.base import Setting
from quietcore.knobs.machinecheck import ALL_DEVICES_KEY, FIELD, MachinecheckKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = MachinecheckKnob()
DEVICES = "/sys/devices/system/machinecheck"
LAB_FILES = [f"{DEVICES}/machinecheck{cpu}/ignore_ce" for cpu in range(4)]


def test_desired_value_is_written_per_device() -> None:
    results = lab_results("machinecheck")
    assert sorted(results) == [f"machinecheck/machinecheck{cpu}/ignore_ce" for cpu in range(4)]
    steps = (
        step
        for key, result in results.items()
        for step in KNOB.steps_to_set(key, result.setting.desired, lab_readings(), lab_topology())
    )
    assert writes(steps) == dict.fromkeys(LAB_FILES, "1")
    assert KNOB.boot_script is True
    settings = [r.setting for r in results.values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()


def test_all_devices_key_writes_every_device_read() -> None:
    steps = KNOB.steps_to_set(ALL_DEVICES_KEY, "1", lab_readings(), lab_topology())
    assert writes(steps) == dict.fromkeys(LAB_FILES, "1")
    # The Firecracker VM has no machine-check device: nothing to write.
    vm = load_readings("knobs-vm-default")
    assert KNOB.steps_to_set(ALL_DEVICES_KEY, "1", vm, this_vm()) == ()


def test_rollback_writes_back_exactly_what_was_read() -> None:
    for key, result in lab_results("machinecheck").items():
        assert result.actual == "0"
        written = writes(KNOB.steps_to_set(key, result.actual, lab_readings(), lab_topology()))
        assert written == {path: lab_readings().first_line(path) for path in written}
        assert len(written) == 1
    # Devices that disagreed (machinecheck1 changed by hand on the lab's layout): the
    # all-devices key's actual names each value, and rollback restores each one.
    files = dict(lab_readings().files)
    files[LAB_FILES[1]] = ("1",)
    readings = Readings(files)
    setting = Setting(ALL_DEVICES_KEY, "machinecheck", "1", FIELD)
    actual = KNOB.observe(setting, readings, lab_topology()).actual
    assert actual == "machinecheck0=0 machinecheck1=1 machinecheck2=0 machinecheck3=0"
    written = writes(KNOB.steps_to_set(ALL_DEVICES_KEY, actual, readings, lab_topology()))
    assert written == {path: readings.first_line(path) for path in LAB_FILES}
    assert KNOB.steps_to_set(ALL_DEVICES_KEY, None, readings, lab_topology()) == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("machinecheck/machinecheck0/../ignore_ce", "1"),
        ("machinecheck/machinecheckX/ignore_ce", "1"),
        ("machinecheck/machinecheck0/tolerant", "1"),
        ("machinecheck/machinecheck0/ignore_ce", "yes"),
        ("machinecheck/machinecheck0/ignore_ce", "1\n"),
        (ALL_DEVICES_KEY, "1;reboot"),
        (ALL_DEVICES_KEY, "machinecheck0=1 ../x=1"),
        (ALL_DEVICES_KEY, "machinecheck0=on"),
        (ALL_DEVICES_KEY, "="),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, lab_readings(), lab_topology())
