"""Converging the unbound workqueue masks: the canonical CPU list written as the hex mask the
kernel prints, on the lab capture (4 possible CPUs, masks ``f``) and the Firecracker captures
(2 possible CPUs; booted ``3``, tuned ``1``), see tests/data/bundles/README.md."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import CAPTURE_PROFILE, context, synthetic_host, this_vm
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes

from quietcore.knobs.workqueue import WorkqueueKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = WorkqueueKnob()
UNBOUND = "/sys/devices/virtual/workqueue/cpumask"
WRITEBACK = "/sys/bus/workqueue/devices/writeback/cpumask"


def test_desired_cpus_are_written_as_a_mask() -> None:
    results = lab_results("workqueue")
    written: dict[str, str] = {}
    for key, result in results.items():
        assert result.setting.desired == "0,2"  # trading's reserved CPUs on the lab VM
        written |= writes(KNOB.steps_to_set(key, "0,2", lab_readings(), lab_topology()))
    assert written == {UNBOUND: "5", WRITEBACK: "5"}
    assert KNOB.boot_script is True
    settings = [r.setting for r in results.values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()


def test_rollback_writes_back_exactly_what_was_read() -> None:
    for key, result in lab_results("workqueue").items():
        assert result.actual == "0-3"
        written = writes(KNOB.steps_to_set(key, result.actual, lab_readings(), lab_topology()))
        assert list(written.values()) == ["f"]
        assert [lab_readings().first_line(path) for path in written] == ["f"]
    vm = this_vm()
    for capture, mask in (("knobs-vm-default", "3"), ("knobs-vm-tuned", "1")):
        readings = load_readings(capture)
        for setting in KNOB.desired(context(CAPTURE_PROFILE, vm)):
            actual = KNOB.observe(setting, readings, vm).actual
            assert actual is not None
            written = writes(KNOB.steps_to_set(setting.key, actual, readings, vm))
            assert list(written.values()) == [mask]
            assert [readings.first_line(path) for path in written] == [mask]


def test_mask_width_follows_the_hosts_possible_cpus() -> None:
    # The kernel prints nr_cpu_ids bits in 32-bit groups: 40 CPUs -> "00,00000005".
    wide = synthetic_host(cpus=40, nodes=2)
    steps = KNOB.steps_to_set("workqueue/cpumask", "0,2", Readings(), wide)
    assert writes(steps) == {UNBOUND: "00,00000005"}
    steps = KNOB.steps_to_set("workqueue/cpumask", "0,39", Readings(), wide)
    assert writes(steps) == {UNBOUND: "80,00000001"}
    assert KNOB.steps_to_set("workqueue/cpumask", None, Readings(), wide) == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("workqueue/cpumask", ""),  # the kernel refuses an empty mask
        ("workqueue/cpumask", "0-3;reboot"),
        ("workqueue/cpumask", "3-0"),
        ("workqueue/cpumask", "0-99999"),
        ("workqueue/../cpumask", "0"),
        ("workqueue/other_cpumask", "0"),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, Readings(), lab_topology())
