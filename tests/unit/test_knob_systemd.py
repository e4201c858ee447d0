"""The systemd family on real captures of the Firecracker VM (see platform_knob_hosts): Debian's
/etc/systemd/system.conf with CPUAffinity commented out, PID 1 ``process_api`` (not systemd);
tuned, a system.conf.d drop-in sets ``CPUAffinity=0``. Drop-in precedence and a systemd PID 1
are built explicitly."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.systemd import SystemdKnob
from quietcore.readings import Readings

KNOB = SystemdKnob()
VM = capture_topology("platform-vm-default")
RESERVED_0_4 = profile(
    cpu={"reserved": "0,4", "isolated": "rest"},
    containers={"systemd": {"cpu_affinity": "reserved"}},
)


def test_booted_vm_has_no_cpu_affinity_and_no_systemd_pid1() -> None:
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, VM)))
    readings = load_readings("platform-vm-default")
    assert verdicts(settings, readings, VM) == {
        "systemd/CPUAffinity": ("drift", "0-1"),  # not set: every CPU
        "systemd/pid1_cpus_allowed": ("unsupported", None),
    }
    reasons = [KNOB.observe(setting, readings, VM).reason for setting in settings]
    assert reasons == [
        "CPUAffinity is not set: systemd and its services may use every CPU",
        "PID 1 is process_api, not systemd: nothing applies CPUAffinity",
    ]


def test_tuned_vm_sets_cpu_affinity_in_a_drop_in() -> None:
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, VM)))
    readings = load_readings("platform-vm-tuned")
    assert verdicts(settings, readings, VM)["systemd/CPUAffinity"] == ("ok", "0")
    assert KNOB.observe(settings[0], readings, VM).reason == (
        "last set in /etc/systemd/system.conf.d/90-quietcore-capture.conf"
    )


def test_drop_ins_sort_by_name_merge_and_reset() -> None:
    # Built explicitly, after systemd-system.conf(5): drop-ins sorted by file name across
    # directories, /etc hiding the same name in /usr/lib, assignments merging, "" resetting.
    host = synthetic_host()
    files = {
        "/etc/systemd/system.conf": ("[Manager]", "CPUAffinity=1-3"),
        "/usr/lib/systemd/system.conf.d/10-vendor.conf": (
            "[Manager]",
            "CPUAffinity=",
            "CPUAffinity=0",
        ),
        "/usr/lib/systemd/system.conf.d/20-site.conf": ("[Manager]", "CPUAffinity=7"),
        "/etc/systemd/system.conf.d/20-site.conf": ("[Manager]", "CPUAffinity=4 "),
        "/run/systemd/system.conf.d/30-other.conf": ("[Other]", "CPUAffinity=5"),
    }
    settings = list(KNOB.desired(context(RESERVED_0_4, host, reserved=frozenset({0, 4}))))
    assert verdicts(settings, Readings(files), host)["systemd/CPUAffinity"] == ("ok", "0,4")
    files["/etc/systemd/system.conf.d/40-more.conf"] = ("[Manager]", "CPUAffinity=6,7 2")
    assert verdicts(settings, Readings(files), host)["systemd/CPUAffinity"] == (
        "drift",
        "0,2,4,6-7",
    )


def test_systemd_pid1_effect_and_missing_configuration() -> None:
    # Built explicitly: a systemd host whose PID 1 still runs on every CPU (no reboot yet).
    host = synthetic_host()
    readings = Readings(
        {
            "/proc/1/comm": ("systemd",),
            "/proc/1/status": ("Name:\tsystemd", "Cpus_allowed_list:\t0-7"),
        }
    )
    settings = list(KNOB.desired(context(RESERVED_0_4, host, reserved=frozenset({0, 4}))))
    assert verdicts(settings, readings, host) == {
        "systemd/CPUAffinity": ("missing", None),
        "systemd/pid1_cpus_allowed": ("drift", "0-7"),
    }


def test_desired_config_and_its_boot_time_effect() -> None:
    settings = list(
        KNOB.desired(context(RESERVED_0_4, synthetic_host(), reserved=frozenset({0, 4})))
    )
    assert [(s.key, s.desired, s.reboot_required, s.field) for s in settings] == [
        # Both take a reboot: systemd reads its drop-in only at boot.
        ("systemd/CPUAffinity", "0,4", True, "containers.systemd.cpu_affinity"),
        ("systemd/pid1_cpus_allowed", "0,4", True, "containers.systemd.cpu_affinity"),
    ]
    assert "/etc/systemd/system.conf.d/*.conf" in KNOB.reads(RESERVED_0_4).files
    assert KNOB.reads(profile()).files == ()
