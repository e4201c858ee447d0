"""Converging the cpu family: governor, EPB (or EPP), idle states, min_perf_pct and boost.

Idle states run on the real Firecracker captures (haltpoll: state0 POLL, state1 "haltpoll
idle"; tuned, CPU 1's state1 is disabled; see tests/data/bundles/README.md). No machine here
has cpufreq (the Firecracker VM and the lab VM have no driver), so the frequency knobs run on
hosts built explicitly, with the file layout the kernel documents: per-CPU
``cpuN/cpufreq/scaling_{driver,governor}`` and ``energy_performance_preference``
(Documentation/admin-guide/pm/cpufreq.rst and intel_pstate.rst), ``cpuN/power/
energy_perf_bias`` (Documentation/ABI/testing/sysfs-devices-system-cpu), the global
``intel_pstate/{no_turbo,min_perf_pct}`` and acpi-cpufreq's ``cpufreq/boost``; the values are
those of an intel_pstate laptop with HWP as booted (powersave, EPB 6, EPP balance_performance,
min_perf_pct 23, turbo on).
"""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.cpu import CpuKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError
from quietcore.topology import Topology

KNOB = CpuKnob()
CPU = "/sys/devices/system/cpu"
VM = capture_topology("platform-vm-default")
FREQUENCY = profile(
    cpu={
        "governor": "performance",
        "energy_perf_bias": "performance",
        "min_perf_pct": 100,
        "boost": False,
    }
)


def _intel_pstate(epb: bool = True) -> Readings:
    files: dict[str, tuple[str, ...]] = {
        f"{CPU}/intel_pstate/min_perf_pct": ("23",),
        f"{CPU}/intel_pstate/no_turbo": ("0",),
    }
    for cpu in (0, 1):
        files[f"{CPU}/cpu{cpu}/cpufreq/scaling_driver"] = ("intel_pstate",)
        files[f"{CPU}/cpu{cpu}/cpufreq/scaling_governor"] = ("powersave",)
        files[f"{CPU}/cpu{cpu}/cpufreq/energy_performance_preference"] = ("balance_performance",)
        if epb:
            files[f"{CPU}/cpu{cpu}/power/energy_perf_bias"] = ("6",)
    return Readings(files)


def _steps(readings: Readings, settings: list[Setting], topology: Topology) -> dict[str, str]:
    return writes(
        step
        for setting in settings
        for step in KNOB.steps_to_set(setting.key, setting.desired, readings, topology)
    )


def test_desired_frequency_settings_on_an_intel_pstate_host() -> None:
    settings = list(KNOB.desired(context(FREQUENCY, VM)))
    assert _steps(_intel_pstate(), settings, VM) == {
        f"{CPU}/cpu0/cpufreq/scaling_governor": "performance",
        f"{CPU}/cpu1/cpufreq/scaling_governor": "performance",
        f"{CPU}/cpu0/power/energy_perf_bias": "0",
        f"{CPU}/cpu1/power/energy_perf_bias": "0",
        f"{CPU}/intel_pstate/min_perf_pct": "100",
        f"{CPU}/intel_pstate/no_turbo": "1",  # boost off is no_turbo on
    }
    assert KNOB.boot_script is True
    assert KNOB.native_files(settings, _intel_pstate(), VM) == ()


def test_epp_only_cpus_get_the_kernels_bucket_name() -> None:
    settings = list(KNOB.desired(context(FREQUENCY, VM)))
    written = _steps(_intel_pstate(epb=False), settings, VM)
    assert written[f"{CPU}/cpu0/cpufreq/energy_performance_preference"] == "performance"
    for epb, epp in (("4", "balance_performance"), ("6", "balance_performance"), ("15", "power")):
        steps = KNOB.steps_to_set("cpu/1/energy_perf_bias", epb, _intel_pstate(epb=False), VM)
        assert writes(steps) == {f"{CPU}/cpu1/cpufreq/energy_performance_preference": epp}


def test_acpi_cpufreq_boost_file() -> None:
    readings = Readings({f"{CPU}/cpufreq/boost": ("1",)})
    assert writes(KNOB.steps_to_set("cpu/boost", "0", readings, VM)) == {
        f"{CPU}/cpufreq/boost": "0"
    }
    assert KNOB.steps_to_set("cpu/boost", "0", Readings(), VM) == ()  # no switch at all


@pytest.mark.parametrize("epb", [True, False])
def test_rollback_writes_back_exactly_what_was_read(epb: bool) -> None:
    readings = _intel_pstate(epb)
    written: dict[str, str] = {}
    for setting in KNOB.desired(context(FREQUENCY, VM)):
        actual = KNOB.observe(setting, readings, VM).actual
        assert actual is not None
        written |= writes(KNOB.steps_to_set(setting.key, actual, readings, VM))
    # Every file is written with the text it had, no_turbo included (boost 1 -> no_turbo 0).
    assert written == {path: readings.first_line(path) for path in written}
    assert written[f"{CPU}/intel_pstate/no_turbo"] == "0"
    epp = f"{CPU}/cpu0/cpufreq/energy_performance_preference"
    assert (epp in written) is not epb
    # A raw EPP number (intel_pstate prints one set outside the named values) goes back as is.
    raw = Readings({epp: ("128",)})
    assert writes(KNOB.steps_to_set("cpu/0/energy_perf_bias", "128", raw, VM)) == {epp: "128"}


def test_idle_states_on_the_firecracker_vm() -> None:
    # max_cstate 0: POLL (state0) stays enabled, every deeper state is disabled.
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, VM)))
    idle = [s for s in settings if "/cpuidle/" in s.key]
    assert _steps(load_readings("platform-vm-default"), idle, VM) == {
        f"{CPU}/cpu0/cpuidle/state0/disable": "0",
        f"{CPU}/cpu0/cpuidle/state1/disable": "1",
        f"{CPU}/cpu1/cpuidle/state0/disable": "0",
        f"{CPU}/cpu1/cpuidle/state1/disable": "1",
    }
    # Trading's settings on the lab VM: no cpuidle driver there, no state to write.
    deeper = [key for key in lab_results("cpu") if "deeper_than" in key]
    assert len(deeper) == 4
    for key in deeper:
        assert KNOB.steps_to_set(key, "1", lab_readings(), lab_topology()) == ()


@pytest.mark.parametrize("capture", ["platform-vm-default", "platform-vm-tuned"])
def test_idle_state_rollback_writes_back_what_was_read(capture: str) -> None:
    readings = load_readings(capture)
    written: dict[str, str] = {}
    for setting in KNOB.desired(context(CAPTURE_PROFILE, VM)):
        if "/cpuidle/" in setting.key:
            actual = KNOB.observe(setting, readings, VM).actual
            assert actual is not None
            written |= writes(KNOB.steps_to_set(setting.key, actual, readings, VM))
    assert written == {path: readings.first_line(path) for path in written}
    assert len(written) == 4
    tuned = capture == "platform-vm-tuned"
    assert written[f"{CPU}/cpu1/cpuidle/state1/disable"] == ("1" if tuned else "0")


def test_deeper_states_are_all_set_alike() -> None:
    # Built on the haltpoll layout with two more states: rollback of "0" (some deeper state
    # enabled) enables them all, so a state disabled by hand before is enabled too (one
    # value per key; the snapshot has no per-state detail).
    files = dict(load_readings("platform-vm-default").files)
    for state, disable in ((2, "1"), (3, "0")):
        files[f"{CPU}/cpu0/cpuidle/state{state}/disable"] = (disable,)
        files[f"{CPU}/cpu0/cpuidle/state{state}/name"] = (f"C{state}",)
    readings = Readings(files)
    key = "cpu/0/cpuidle/deeper_than_state1/disable"
    assert writes(KNOB.steps_to_set(key, "0", readings, VM)) == {
        f"{CPU}/cpu0/cpuidle/state2/disable": "0",
        f"{CPU}/cpu0/cpuidle/state3/disable": "0",
    }


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("cpu/0/../scaling_governor", "performance"),
        ("cpu/x/scaling_governor", "performance"),
        ("cpu/0/scaling_max_freq", "100"),
        ("cpu/0/scaling_governor", "performance;reboot"),
        ("cpu/0/scaling_governor", "performance\n"),
        ("cpu/0/scaling_governor", ""),
        ("cpu/0/energy_perf_bias", "$(id)"),
        ("cpu/0/cpuidle/state1/disable", "2"),
        ("cpu/0/cpuidle/state1/../disable", "1"),
        ("cpu/0/cpuidle/deeper_than_stateX/disable", "1"),
        ("cpu/intel_pstate/min_perf_pct", "100%"),
        ("cpu/boost", "on"),
        ("cpu/0/unknown", None),
    ],
)
def test_unsafe_keys_and_values_are_refused(key: str, value: str | None) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, _intel_pstate(), VM)
