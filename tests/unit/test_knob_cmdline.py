"""The cmdline family and its isolation effect checks, on real captures of the 2-CPU
Firecracker VM (see knob_hosts); hosts that boot with isolation are built explicitly."""

from __future__ import annotations

import pytest
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

from quietcore.knobs.cmdline import (
    PROC_CMDLINE,
    CmdlineKnob,
    kernel_arguments,
    last_argument,
    same_argument,
)
from quietcore.profile.errors import ResolveError
from quietcore.readings import Readings

KNOB = CmdlineKnob()
ISOLATING = profile(
    cpu={
        "reserved": "0,4",
        "isolated": "rest",
        "isolation": ["isolcpus", "nohz_full", "rcu_nocbs"],
        "isolcpus_flags": ["managed_irq", "domain"],
    },
    hugepages={"default_size": "1G"},
    kernel={"cmdline": ["skew_tick=1", "nosoftlockup"]},
)


def _cmdline(readings: Readings) -> str:
    text = readings.text(PROC_CMDLINE)
    assert text is not None
    return text


def test_init_arguments_after_a_lone_double_dash_are_not_kernel_arguments() -> None:
    cmdline = _cmdline(load_readings("knobs-vm-default"))
    arguments = kernel_arguments(cmdline)
    assert "--firecracker-init" in cmdline.split()
    assert arguments[0] == "mitigations=auto,no_guest_host,no_guest_guest"
    assert arguments[-1] == "rdinit=/process_api"
    assert not any(argument.startswith("-") for argument in arguments)
    assert len(arguments) == cmdline.split().index("--")


def test_quotes_group_words_and_the_last_occurrence_wins() -> None:
    arguments = kernel_arguments('quiet acpi_osi="!Windows 2012" panic=1 panic=10 \n')
    assert arguments == ["quiet", "acpi_osi=!Windows 2012", "panic=1", "panic=10"]
    assert last_argument(arguments, "panic") == "panic=10"
    assert last_argument(arguments, "pani") is None


@pytest.mark.parametrize(
    ("desired", "actual", "same"),
    [
        ("isolcpus=2-7", "isolcpus=domain,2,3,4-7", True),  # no flags means domain
        ("isolcpus=managed_irq,domain,2-7", "isolcpus=domain,managed_irq,2-7", True),
        ("isolcpus=managed_irq,domain,2-7", "isolcpus=domain,2-7", False),
        ("nohz_full=1-3", "nohz_full=1,2,3", True),
        ("nohz_full=1-3", "nohz_full=1-4", False),
        ("rcu_nocbs=1-3", "rcu_nocbs=junk", False),
        ("default_hugepagesz=1G", "default_hugepagesz=1024M", True),
        ("default_hugepagesz=1G", "default_hugepagesz=2M", False),
        ("nosoftlockup", "nosoftlockup", True),
        ("nosoftlockup", "nosoftlockup=0", False),
        ("skew_tick=1", "skew_tick=01", False),
    ],
)
def test_arguments_compare_by_meaning(desired: str, actual: str, same: bool) -> None:
    assert same_argument(desired, actual) is same


def test_profile_arguments_and_effect_checks_on_an_8_cpu_host() -> None:
    settings = KNOB.desired(context(ISOLATING, synthetic_host(), reserved=frozenset({0, 4})))
    assert {s.key: (s.desired, s.field) for s in settings} == {
        "cmdline/skew_tick": ("skew_tick=1", "kernel.cmdline.0"),
        "cmdline/nosoftlockup": ("nosoftlockup", "kernel.cmdline.1"),
        "cmdline/isolcpus": ("isolcpus=managed_irq,domain,1-3,5-7", "cpu.isolation.0"),
        "cmdline/nohz_full": ("nohz_full=1-3,5-7", "cpu.isolation.1"),
        "cmdline/rcu_nocbs": ("rcu_nocbs=1-3,5-7", "cpu.isolation.2"),
        "cmdline/default_hugepagesz": ("default_hugepagesz=1G", "hugepages.default_size"),
        "isolation/isolated": ("1-3,5-7", "cpu.isolation.0"),
        "isolation/nohz_full": ("1-3,5-7", "cpu.isolation.1"),
    }
    assert all(s.reboot_required for s in settings)


def test_isolated_cpus_are_checked_only_for_domain_isolation() -> None:
    managed_only = profile(
        cpu={
            "reserved": "0",
            "isolated": "rest",
            "isolation": ["isolcpus"],
            "isolcpus_flags": ["managed_irq", "nohz"],
        }
    )
    settings = KNOB.desired(context(managed_only, synthetic_host()))
    assert {s.key: s.field for s in settings} == {
        "cmdline/isolcpus": "cpu.isolation.0",
        "isolation/nohz_full": "cpu.isolcpus_flags.1",  # isolcpus=nohz is nohz_full
    }


def test_one_argument_name_with_two_values_is_refused() -> None:
    twice = profile(kernel={"cmdline": ["panic=1", "quiet", "panic=10"]})
    with pytest.raises(ResolveError, match=r"contradicts panic=1 from kernel\.cmdline\.0") as no:
        list(KNOB.desired(context(twice, this_vm())))
    assert no.value.field == "kernel.cmdline.2"
    repeated = profile(kernel={"cmdline": ["quiet", "quiet"]})
    assert [s.key for s in KNOB.desired(context(repeated, this_vm()))] == ["cmdline/quiet"]


def test_default_vm_lacks_the_isolation_it_cannot_have() -> None:
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, this_vm())))
    readings = load_readings("knobs-vm-default")
    assert verdicts(settings, readings, this_vm()) == {
        "cmdline/panic": ("ok", "panic=1"),
        "cmdline/quiet": ("ok", "quiet"),
        "cmdline/reboot": ("drift", "reboot=k"),
        "cmdline/skew_tick": ("drift", None),
        "cmdline/isolcpus": ("drift", None),
        "cmdline/nohz_full": ("drift", None),
        "cmdline/rcu_nocbs": ("drift", None),
        "cmdline/default_hugepagesz": ("drift", None),
        "isolation/isolated": ("drift", ""),
        "isolation/nohz_full": ("unsupported", None),
    }
    seen = results(settings, readings, this_vm())
    assert seen["cmdline/skew_tick"].reason == "not on the running kernel's command line"
    assert "NO_HZ_FULL" in seen["isolation/nohz_full"].reason


def test_a_host_booted_with_isolation_is_ok() -> None:
    # No capture shows an isolating boot (this VM's kernel is fixed): these files are what
    # such a host prints, with an older isolcpus spelling and repeated arguments.
    readings = Readings(
        {
            PROC_CMDLINE: (
                "BOOT_IMAGE=/vmlinuz nohz_full=1 isolcpus=domain,managed_irq,1-3,5-7 "
                "nohz_full=1,2,3,5,6,7 rcu_nocbs=1-3,5-7 skew_tick=1 nosoftlockup "
                "default_hugepagesz=1024M -- nohz_full=0",
            ),
            "/sys/devices/system/cpu/isolated": ("1-3,5-7",),
            "/sys/devices/system/cpu/nohz_full": ("1-3,5-7",),
        }
    )
    host = synthetic_host()
    settings = KNOB.desired(context(ISOLATING, host, reserved=frozenset({0, 4})))
    assert {key: status for key, (status, _) in verdicts(settings, readings, host).items()} == {
        key: "ok"
        for key in (
            "cmdline/skew_tick",
            "cmdline/nosoftlockup",
            "cmdline/isolcpus",
            "cmdline/nohz_full",
            "cmdline/rcu_nocbs",
            "cmdline/default_hugepagesz",
            "isolation/isolated",
            "isolation/nohz_full",
        )
    }


def test_a_kernel_without_tickless_cpus_prints_null() -> None:
    readings = Readings({"/sys/devices/system/cpu/nohz_full": ("(null)",)})
    settings = [s for s in KNOB.desired(context(ISOLATING, this_vm())) if s.key.startswith("iso")]
    assert verdicts(settings, readings, this_vm())["isolation/nohz_full"] == ("drift", "")


def test_reads_cmdline_and_effect_files_only_when_declared() -> None:
    assert KNOB.reads(profile()).files == ()
    assert KNOB.reads(ISOLATING).files == (
        PROC_CMDLINE,
        "/sys/devices/system/cpu/isolated",
        "/sys/devices/system/cpu/nohz_full",
    )
