"""systemd's DefaultLimitNOFILE (``containers.systemd.default_limit_nofile``) on real captures of
the 4-CPU, 2-node lab (Debian 12, systemd 252): ``lab-api-gateway-default`` as booted (systemd's
built-in 1024:524288), ``lab-api-gateway-applied`` after ``quietcore apply --profile
api-gateway`` (the drop-in, then ``systemctl daemon-reload``: the manager reports 524288 at once).
PID 1 other than systemd: the Firecracker capture ``platform-vm-default`` (``process_api``)."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.systemd import (
    CONFIG_KEY,
    DROP_IN,
    NOFILE_EFFECT_KEY,
    NOFILE_KEY,
    SystemdKnob,
    canonical_limit,
    manager_limit,
)
from quietcore.profile.schema import Profile
from quietcore.readings import CommandResult, Readings
from quietcore.steps import Run, UnsafeStepError
from quietcore.topology import parse_topology

KNOB = SystemdKnob()
NOFILE = profile(containers={"systemd": {"default_limit_nofile": 524288}})
BOTH = profile(
    cpu={"reserved": "0,2", "isolated": "rest"},
    containers={"systemd": {"cpu_affinity": "reserved", "default_limit_nofile": "infinity"}},
)
LAB = parse_topology(load_readings("lab-api-gateway-default"))


def _settings(prof: Profile = NOFILE) -> list[Setting]:
    return list(KNOB.desired(context(prof, LAB)))


def test_booted_lab_has_systemds_default_limit() -> None:
    readings = load_readings("lab-api-gateway-default")
    settings = _settings()
    assert verdicts(settings, readings, LAB) == {
        NOFILE_KEY: ("drift", None),
        NOFILE_EFFECT_KEY: ("drift", "1024:524288"),
    }
    assert KNOB.observe(settings[0], readings, LAB).reason == (
        "DefaultLimitNOFILE is not set: systemd's built-in default applies"
    )


def test_applied_lab_reads_the_drop_in_and_the_reloaded_manager() -> None:
    readings = load_readings("lab-api-gateway-applied")
    settings = _settings()
    assert verdicts(settings, readings, LAB) == {
        NOFILE_KEY: ("ok", "524288"),
        NOFILE_EFFECT_KEY: ("ok", "524288"),
    }
    assert KNOB.observe(settings[0], readings, LAB).reason == f"last set in {DROP_IN}"
    # What apply renders is what the lab read back (comments name the profile's line).
    [file] = KNOB.native_files(settings, readings, LAB)
    assignments = [line for line in file.content.splitlines() if not line.startswith("#")]
    assert assignments == ["[Manager]", "DefaultLimitNOFILE=524288"]
    assert [line for line in readings.lines(DROP_IN) or () if not line.startswith("#")] == (
        assignments
    )


def test_desired_keys_need_no_reboot_and_reload_systemd() -> None:
    settings = _settings()
    assert [(s.key, s.desired, s.reboot_required, s.effect) for s in settings] == [
        (NOFILE_KEY, "524288", False, False),
        (NOFILE_EFFECT_KEY, "524288", False, True),
    ]
    [file] = KNOB.native_files(settings, Readings(), LAB)
    assert file.activate == (Run(("systemctl", "daemon-reload"), systemd_only=True),)
    assert not file.reboot
    # Nothing is written at runtime: the file and the reload do it; rollback removes the file.
    for setting in settings:
        assert KNOB.steps_to_set(setting.key, setting.desired, Readings(), LAB) == ()
    spec = KNOB.reads(NOFILE)
    assert [name for name, _ in spec.commands] == ["systemd-manager"]
    assert KNOB.reads(profile()).commands == ()


def test_with_cpu_affinity_one_file_reboots_and_reloads() -> None:
    host = synthetic_host()
    settings = list(KNOB.desired(context(BOTH, host, reserved=frozenset({0, 2}))))
    assert {s.key: s.desired for s in settings if not s.effect} == {
        CONFIG_KEY: "0,2",
        NOFILE_KEY: "infinity",
    }
    [file] = KNOB.native_files(settings, Readings(), host)
    assert file.reboot and file.activate
    assignments = [line for line in file.content.splitlines() if not line.startswith("#")]
    assert assignments == [
        "[Manager]",
        "CPUAffinity=",
        "CPUAffinity=0,2",
        "DefaultLimitNOFILE=infinity",
    ]


def test_not_systemd_pid1_is_unsupported() -> None:
    vm = capture_topology("platform-vm-default")
    readings = load_readings("platform-vm-default")
    settings = list(KNOB.desired(context(NOFILE, vm)))
    seen = KNOB.observe(settings[1], readings, vm)
    assert (seen.status, seen.reason) == (
        "unsupported",
        "PID 1 is process_api, not systemd: nothing applies DefaultLimitNOFILE",
    )


def test_last_assignment_wins_and_empty_ones_are_ignored() -> None:
    # Built: systemd 252 in the lab kept 65536 when a later drop-in said `DefaultLimitNOFILE=`.
    files = {
        "/etc/systemd/system.conf": ("[Manager]", "#DefaultLimitNOFILE=1024:524288"),
        "/usr/lib/systemd/system.conf.d/10-vendor.conf": ("[Manager]", "DefaultLimitNOFILE=4096"),
        "/etc/systemd/system.conf.d/50-a.conf": ("[Manager]", "DefaultLimitNOFILE=65536:65536"),
        "/etc/systemd/system.conf.d/60-b.conf": ("[Manager]", "DefaultLimitNOFILE="),
    }
    [config, _] = _settings(profile(containers={"systemd": {"default_limit_nofile": 65536}}))
    seen = KNOB.observe(config, Readings(files), LAB)
    assert (seen.actual, seen.reason) == (
        "65536",
        "last set in /etc/systemd/system.conf.d/50-a.conf",
    )


def test_manager_values_are_canonical() -> None:
    assert canonical_limit("1024:524288") == "1024:524288"
    assert canonical_limit(" 65536:65536 ") == "65536"
    assert canonical_limit("infinity") == "infinity"
    shown = ["DefaultLimitNOFILE=infinity", "DefaultLimitNOFILESoft=infinity"]
    assert manager_limit(shown) == "infinity"
    assert manager_limit(["DefaultLimitNOFILE=524288"]) is None  # no soft limit shown


def test_a_failed_systemctl_show_is_unsupported() -> None:
    commands = {"systemd-manager": CommandResult(("Failed to connect to bus",), 1)}
    readings = Readings({"/proc/1/comm": ("systemd",)}, commands)
    seen = KNOB.observe(_settings()[1], readings, LAB)
    assert (seen.status, seen.reason) == (
        "unsupported",
        "systemctl show gave no limit: Failed to connect to bus",
    )


@pytest.mark.parametrize("limit", ["", "1024\nCPUAffinity=1", "-1", "unlimited"])
def test_unsafe_limits_are_refused(limit: str) -> None:
    setting = Setting(NOFILE_KEY, "systemd", limit, "containers.systemd.default_limit_nofile")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], Readings(), LAB)
