"""Converging hugepage pools: counts written to per-node or host-wide ``nr_hugepages``, on the
lab capture (trading: 2 x 1G on node 0, none allocated) and the Firecracker captures (tuned:
4 x 2M on node 0), see tests/data/bundles/README.md."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import CAPTURE_PROFILE, context, this_vm
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes

from quietcore.knobs.hugepages import DEFAULT_SIZE_KEY, HugepagesKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError

KNOB = HugepagesKnob()
NODE0_1G = "/sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages"


def _steps(key: str, value: str | None, readings: Readings | None = None) -> dict[str, str]:
    return writes(KNOB.steps_to_set(key, value, readings or Readings(), lab_topology()))


def test_desired_counts_are_written_and_default_size_is_an_effect() -> None:
    results = lab_results("hugepages")
    pool, default = results["hugepages/node0/1048576kB"], results[DEFAULT_SIZE_KEY]
    assert (pool.setting.desired, pool.actual, pool.setting.effect) == ("2", "0", False)
    assert _steps(pool.setting.key, pool.setting.desired, lab_readings()) == {NODE0_1G: "2"}
    # default_hugepagesz= is on the kernel command line (the cmdline family): nothing to write,
    # and verify still compares it.
    assert (default.setting.effect, default.setting.reboot_required) == (True, True)
    assert (default.actual, default.status) == ("2M", "drift")
    assert _steps(DEFAULT_SIZE_KEY, "1G", lab_readings()) == {}
    assert KNOB.boot_script is True


@pytest.mark.parametrize("capture", ["knobs-vm-default", "knobs-vm-tuned"])
def test_rollback_writes_back_exactly_what_was_read(capture: str) -> None:
    readings, vm = load_readings(capture), this_vm()
    written: dict[str, str] = {}
    for setting in KNOB.desired(context(CAPTURE_PROFILE, vm)):
        observed = KNOB.observe(setting, readings, vm)
        if observed.actual is not None:  # 32M, node1: the pool does not exist there
            written |= writes(KNOB.steps_to_set(setting.key, observed.actual, readings, vm))
    assert written == {path: readings.first_line(path) for path in written}
    node0_2m = "/sys/devices/system/node/node0/hugepages/hugepages-2048kB/nr_hugepages"
    host_1g = "/sys/kernel/mm/hugepages/hugepages-1048576kB/nr_hugepages"
    expected = {"knobs-vm-default": "0", "knobs-vm-tuned": "4"}[capture]
    assert written == {node0_2m: expected, host_1g: "0"}
    assert _steps("hugepages/node1/2048kB", None) == {}


def test_no_native_file() -> None:
    settings = [r.setting for r in lab_results("hugepages").values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()
    assert KNOB.managed_paths == ()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("hugepages/node0/../2048kB", "1"),
        ("hugepages/nodeX/2048kB", "1"),
        ("hugepages/2048", "1"),
        ("hugepages/2048kB\n", "1"),
        ("hugepages/2048kB", "-1"),
        ("hugepages/2048kB", "4 5"),
        ("hugepages/2048kB", "4\n"),
        ("hugepages/2048kB", ""),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, Readings(), lab_topology())
