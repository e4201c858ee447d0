"""Converging THP and KSM: the mode word or number written back into its sysfs file, on the lab
capture (THP always) and the Firecracker captures (booted: THP madvise, KSM 0; tuned: THP
never, KSM 2), see tests/data/bundles/README.md."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import CAPTURE_PROFILE, context, this_vm
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes

from quietcore.knobs.vm import VmKnob, selected_mode
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = VmKnob()
THP = "/sys/kernel/mm/transparent_hugepage"
KSM = "/sys/kernel/mm/ksm/run"


def test_desired_modes_are_written() -> None:
    results = lab_results("vm")
    assert {key: r.setting.desired for key, r in results.items()} == {
        "vm/thp_enabled": "never",
        "vm/ksm_run": "0",
    }
    steps = (
        step
        for key, result in results.items()
        for step in KNOB.steps_to_set(key, result.setting.desired, lab_readings(), lab_topology())
    )
    assert writes(steps) == {f"{THP}/enabled": "never", KSM: "0"}
    assert KNOB.boot_script is True
    settings = [r.setting for r in results.values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()


@pytest.mark.parametrize("capture", ["knobs-vm-default", "knobs-vm-tuned"])
def test_rollback_writes_back_the_selected_mode(capture: str) -> None:
    readings, vm = load_readings(capture), this_vm()
    written: dict[str, str] = {}
    for setting in KNOB.desired(context(CAPTURE_PROFILE, vm)):
        actual = KNOB.observe(setting, readings, vm).actual
        assert actual is not None
        written |= writes(KNOB.steps_to_set(setting.key, actual, readings, vm))
    # Each file gets back the word its list brackets (the kernel takes one word, not the list).
    assert written == {
        path: selected_mode(readings.text(path) or "")
        for path in (f"{THP}/enabled", f"{THP}/defrag", KSM)
    }
    expected = {
        "knobs-vm-default": {f"{THP}/enabled": "madvise", f"{THP}/defrag": "madvise", KSM: "0"},
        "knobs-vm-tuned": {f"{THP}/enabled": "never", f"{THP}/defrag": "never", KSM: "2"},
    }
    assert written == expected[capture]


def test_every_defrag_mode_the_kernel_lists_can_be_written_back() -> None:
    listed = (load_readings("knobs-vm-default").text(f"{THP}/defrag") or "").split()
    modes = [mode.strip("[]") for mode in listed]
    assert modes == ["always", "defer", "defer+madvise", "madvise", "never"]
    for mode in modes:
        steps = KNOB.steps_to_set("vm/thp_defrag", mode, Readings(), this_vm())
        assert writes(steps) == {f"{THP}/defrag": mode}
    assert KNOB.steps_to_set("vm/thp_enabled", None, Readings(), this_vm()) == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("vm/thp", "never"),
        ("vm/../thp_enabled", "never"),
        ("vm/thp_enabled", "never\n"),
        ("vm/thp_enabled", "always [madvise] never"),
        ("vm/thp_enabled", "never;reboot"),
        ("vm/thp_defrag", "defer+"),
        ("vm/ksm_run", "on"),
        ("vm/ksm_run", "-1"),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, Readings(), this_vm())
