"""The cpu family on real captures of the Firecracker VM (see platform_knob_hosts): no cpufreq,
no EPB or EPP, the haltpoll cpuidle driver with state0 POLL and state1 "haltpoll idle"; tuned,
CPU 1's state1 is disabled. Hosts with a cpufreq driver are built explicitly."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Status
from quietcore.knobs.cpu import NO_CPUFREQ, CpuKnob, epp_of_epb
from quietcore.profile.schema import Profile
from quietcore.readings import Readings

KNOB = CpuKnob()
VM = capture_topology("platform-vm-default")
CPU = "/sys/devices/system/cpu"


def _verdicts(
    readings: Readings, declared: Profile = CAPTURE_PROFILE
) -> dict[str, tuple[Status, str | None]]:
    return verdicts(KNOB.desired(context(declared, VM)), readings, VM)


def test_vm_without_cpufreq_reports_frequency_knobs_unsupported() -> None:
    seen = _verdicts(load_readings("platform-vm-default"))
    for key in (
        "cpu/0/scaling_governor",
        "cpu/1/energy_perf_bias",
        "cpu/intel_pstate/min_perf_pct",
        "cpu/boost",
    ):
        assert seen[key] == ("unsupported", None)
    governor = next(
        s for s in KNOB.desired(context(CAPTURE_PROFILE, VM)) if s.key == "cpu/0/scaling_governor"
    )
    assert KNOB.observe(governor, load_readings("platform-vm-default"), VM).reason == NO_CPUFREQ


def test_idle_states_deeper_than_the_limit_must_be_disabled() -> None:
    # max_cstate 0: POLL stays enabled, haltpoll idle (state1) must be disabled.
    booted = _verdicts(load_readings("platform-vm-default"))
    tuned = _verdicts(load_readings("platform-vm-tuned"))
    assert booted["cpu/0/cpuidle/state0/disable"] == ("ok", "0")
    assert booted["cpu/0/cpuidle/deeper_than_state0/disable"] == ("drift", "0")
    assert booted["cpu/1/cpuidle/deeper_than_state0/disable"] == ("drift", "0")
    assert tuned["cpu/0/cpuidle/deeper_than_state0/disable"] == ("drift", "0")
    assert tuned["cpu/1/cpuidle/deeper_than_state0/disable"] == ("ok", "1")
    settings = {s.key: s for s in KNOB.desired(context(CAPTURE_PROFILE, VM))}
    readings = load_readings("platform-vm-default")
    assert KNOB.observe(settings["cpu/0/cpuidle/state0/disable"], readings, VM).reason == "POLL"
    assert KNOB.observe(
        settings["cpu/0/cpuidle/deeper_than_state0/disable"], readings, VM
    ).reason == ("still enabled: state1 (haltpoll idle)")


def test_a_limit_beyond_the_cpus_states() -> None:
    declared = profile(cpu={"max_cstate": 2})
    seen = _verdicts(load_readings("platform-vm-default"), declared)
    assert seen["cpu/0/cpuidle/state1/disable"] == ("ok", "0")
    assert seen["cpu/0/cpuidle/state2/disable"] == ("unsupported", None)
    assert seen["cpu/0/cpuidle/deeper_than_state2/disable"] == ("ok", "1")


def test_no_cpuidle_driver() -> None:
    # Built explicitly: booted with cpuidle.off=1, the driver file says "none".
    readings = Readings({f"{CPU}/cpuidle/current_driver": ("none",)})
    seen = _verdicts(readings, profile(cpu={"max_cstate": 1}))
    assert set(seen.values()) == {("unsupported", None)}


def _intel_pstate_host(**extra: tuple[str, ...]) -> Readings:
    # Built explicitly: an intel_pstate host (no VM here has cpufreq) with HWP.
    files: dict[str, tuple[str, ...]] = {
        f"{CPU}/intel_pstate/min_perf_pct": ("100",),
        f"{CPU}/intel_pstate/no_turbo": ("1",),
    }
    for cpu in (0, 1):
        files[f"{CPU}/cpu{cpu}/cpufreq/scaling_driver"] = ("intel_pstate",)
        files[f"{CPU}/cpu{cpu}/cpufreq/scaling_governor"] = ("performance" if cpu else "powersave",)
    return Readings(files | extra)


FREQUENCY = profile(
    cpu={
        "governor": "performance",
        "energy_perf_bias": "performance",
        "min_perf_pct": 100,
        "boost": False,
    }
)


def test_intel_pstate_host_with_energy_perf_bias() -> None:
    readings = _intel_pstate_host(
        **{
            f"{CPU}/cpu0/power/energy_perf_bias": ("0",),
            f"{CPU}/cpu1/power/energy_perf_bias": ("6",),
        }
    )
    assert _verdicts(readings, FREQUENCY) == {
        "cpu/0/scaling_governor": ("drift", "powersave"),
        "cpu/0/energy_perf_bias": ("ok", "0"),
        "cpu/1/scaling_governor": ("ok", "performance"),
        "cpu/1/energy_perf_bias": ("drift", "6"),
        "cpu/intel_pstate/min_perf_pct": ("ok", "100"),
        "cpu/boost": ("ok", "0"),  # no_turbo 1 = boost off
    }


def test_epp_only_cpus_compare_through_the_kernels_buckets() -> None:
    readings = _intel_pstate_host(
        **{
            f"{CPU}/cpu0/cpufreq/energy_performance_preference": ("performance",),
            f"{CPU}/cpu1/cpufreq/energy_performance_preference": ("balance_performance",),
        }
    )
    seen = _verdicts(readings, FREQUENCY)
    assert seen["cpu/0/energy_perf_bias"] == ("ok", "performance")
    assert seen["cpu/1/energy_perf_bias"] == ("drift", "balance_performance")
    assert [epp_of_epb(epb) for epb in (0, 4, 6, 8, 15)] == [
        "performance",
        "balance_performance",
        "balance_performance",
        "balance_power",
        "power",
    ]


def test_acpi_cpufreq_host_boost_file_and_no_min_perf_pct() -> None:
    # Built explicitly: acpi-cpufreq has the global boost switch but no intel_pstate directory.
    files = {f"{CPU}/cpu{cpu}/cpufreq/scaling_driver": ("acpi-cpufreq",) for cpu in (0, 1)}
    files[f"{CPU}/cpufreq/boost"] = ("1",)
    seen = _verdicts(Readings(files), profile(cpu={"min_perf_pct": 100, "boost": False}))
    assert seen == {
        "cpu/intel_pstate/min_perf_pct": ("unsupported", None),
        "cpu/boost": ("drift", "1"),
    }
    [min_perf] = KNOB.desired(context(profile(cpu={"min_perf_pct": 100}), VM))
    assert "acpi-cpufreq" in KNOB.observe(min_perf, Readings(files), VM).reason


def test_desired_per_online_cpu() -> None:
    host = synthetic_host()
    declared = profile(
        cpu={"governor": "performance", "energy_perf_bias": "normal", "max_cstate": 1}
    )
    settings = list(KNOB.desired(context(declared, host)))
    assert len(settings) == 8 * 5
    cpu7 = {s.key: (s.desired, s.field) for s in settings if s.key.startswith("cpu/7/")}
    assert cpu7 == {
        "cpu/7/scaling_governor": ("performance", "cpu.governor"),
        "cpu/7/energy_perf_bias": ("6", "cpu.energy_perf_bias"),
        "cpu/7/cpuidle/state0/disable": ("0", "cpu.max_cstate"),
        "cpu/7/cpuidle/state1/disable": ("0", "cpu.max_cstate"),
        "cpu/7/cpuidle/deeper_than_state1/disable": ("1", "cpu.max_cstate"),
    }
    assert KNOB.reads(profile()).files == ()
    assert f"{CPU}/cpu[0-9]*/cpuidle/state[0-9]*/disable" in KNOB.reads(declared).files
