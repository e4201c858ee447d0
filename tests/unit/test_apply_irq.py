"""Converging IRQ affinity: ``smp_affinity_list`` as a CPU list, ``default_smp_affinity`` as the
hex mask the kernel prints, effective affinity only read; on the lab capture (4 possible CPUs,
default mask ``f``) and the Firecracker captures (2 possible CPUs; default ``3``, tuned ``1``),
see tests/data/bundles/README.md."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes
from tests.unit.platform_knob_hosts import capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.irq import DEFAULT_AFFINITY, DEFAULT_KEY, FIELD, IrqKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = IrqKnob()


def _steps(key: str, value: str | None, readings: Readings | None = None) -> dict[str, str]:
    return writes(KNOB.steps_to_set(key, value, readings or lab_readings(), lab_topology()))


def test_desired_affinity_is_written_and_effective_affinity_is_an_effect() -> None:
    results = lab_results("irq")
    allowed = {k: r for k, r in results.items() if k.endswith("/smp_affinity_list")}
    effective = {k: r for k, r in results.items() if k.endswith("/effective_affinity_list")}
    assert len(allowed) == len(effective) == 37  # IRQs 0-16 and 24-43
    assert _steps(DEFAULT_KEY, results[DEFAULT_KEY].setting.desired) == {DEFAULT_AFFINITY: "5"}
    for key, result in allowed.items():
        assert result.setting.effect is False
        path = "/proc/" + key.removesuffix("/smp_affinity_list") + "/smp_affinity_list"
        assert _steps(key, result.setting.desired) == {path: "0,2"}
    for key, result in effective.items():
        assert result.setting.effect is True
        assert _steps(key, "0,2") == {}
    # Effects still verify: IRQ 3 delivers on CPU 0, inside trading's reserved 0,2.
    assert (effective["irq/3/effective_affinity_list"].status) == "ok"
    assert KNOB.boot_script is True
    settings = [r.setting for r in results.values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()


def test_rollback_writes_back_exactly_what_was_read() -> None:
    readings = lab_readings()
    for key, result in lab_results("irq").items():
        if result.setting.effect:
            continue
        assert result.actual is not None
        written = _steps(key, result.actual)
        if key == DEFAULT_KEY:
            assert (result.actual, written) == ("0-3", {DEFAULT_AFFINITY: "f"})
        assert written == {path: readings.first_line(path) for path in written}
    assert _steps("irq/42/smp_affinity_list", "2-3") == {"/proc/irq/42/smp_affinity_list": "2-3"}
    assert _steps("irq/99/smp_affinity_list", None) == {}  # an IRQ that did not exist before
    for capture, mask in (("platform-vm-default", "3"), ("platform-vm-tuned", "1")):
        vm, vm_readings = capture_topology(capture), load_readings(capture)
        setting = Setting(DEFAULT_KEY, "irq", "0", FIELD)
        actual = KNOB.observe(setting, vm_readings, vm).actual
        assert actual is not None
        steps = KNOB.steps_to_set(DEFAULT_KEY, actual, vm_readings, vm)
        assert writes(steps) == {DEFAULT_AFFINITY: mask}
        assert vm_readings.first_line(DEFAULT_AFFINITY) == mask


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("irq/45/../smp_affinity_list", "0"),
        ("irq/x/smp_affinity_list", "0"),
        ("irq/45/smp_affinity", "1"),
        ("irq/45/smp_affinity_list\n", "0"),
        ("irq/45/smp_affinity_list", ""),  # the kernel refuses an empty set
        ("irq/45/smp_affinity_list", "0;reboot"),
        ("irq/45/smp_affinity_list", "0-3 4"),
        (DEFAULT_KEY, ""),
        (DEFAULT_KEY, "ff"),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, lab_readings(), lab_topology())
