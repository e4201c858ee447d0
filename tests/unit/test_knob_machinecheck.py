"""The machinecheck family. The 2-CPU Firecracker VM reports the MCE and MCA CPU flags but its
kernel creates no machine-check devices (real captures, see knob_hosts); the bare-metal
x86 host with devices is built explicitly."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import (
    CAPTURE_PROFILE,
    context,
    profile,
    results,
    synthetic_host,
    this_vm,
    verdicts,
)

from quietcore.knobs.machinecheck import ALL_DEVICES_KEY, NO_DEVICES, MachinecheckKnob
from quietcore.readings import Readings

KNOB = MachinecheckKnob()
IGNORE_CE = profile(kernel={"mce_ignore_ce": True})
METAL = Readings(
    {
        "/sys/devices/system/machinecheck/machinecheck0/ignore_ce": ("1",),
        "/sys/devices/system/machinecheck/machinecheck1/ignore_ce": ("0",),
    }
)


def test_vm_without_machine_check_devices_is_unsupported() -> None:
    settings = KNOB.desired(context(CAPTURE_PROFILE, this_vm()))
    seen = results(settings, load_readings("knobs-vm-default"), this_vm())
    assert {key: (r.status, r.reason) for key, r in seen.items()} == {
        "machinecheck/machinecheck0/ignore_ce": ("unsupported", NO_DEVICES),
        "machinecheck/machinecheck1/ignore_ce": ("unsupported", NO_DEVICES),
    }


def test_a_cpu_without_mce_gets_one_setting_for_all_devices() -> None:
    no_mce = synthetic_host(cpus=4, nodes=1, flags=frozenset({"fpu"}))
    settings = list(KNOB.desired(context(IGNORE_CE, no_mce)))
    assert [(s.key, s.desired, s.field) for s in settings] == [
        (ALL_DEVICES_KEY, "1", "kernel.mce_ignore_ce")
    ]
    assert verdicts(settings, load_readings("knobs-vm-tuned"), no_mce) == {
        ALL_DEVICES_KEY: ("unsupported", None)
    }


def test_each_device_is_its_own_setting_on_metal() -> None:
    host = synthetic_host(cpus=4, nodes=1)
    settings = KNOB.desired(context(IGNORE_CE, host))
    assert verdicts(settings, METAL, host) == {
        "machinecheck/machinecheck0/ignore_ce": ("ok", "1"),
        "machinecheck/machinecheck1/ignore_ce": ("drift", "0"),
        "machinecheck/machinecheck2/ignore_ce": ("missing", None),
        "machinecheck/machinecheck3/ignore_ce": ("missing", None),
    }


def test_the_all_devices_setting_shows_devices_that_disagree() -> None:
    host = synthetic_host(cpus=2, nodes=1, flags=frozenset())
    settings = KNOB.desired(context(IGNORE_CE, host))
    assert verdicts(settings, METAL, host) == {
        ALL_DEVICES_KEY: ("drift", "machinecheck0=1 machinecheck1=0")
    }


def test_reads_the_device_glob_only_when_declared() -> None:
    assert KNOB.reads(profile()).files == ()
    assert KNOB.reads(IGNORE_CE).files == (
        "/sys/devices/system/machinecheck/machinecheck*/ignore_ce",
    )
