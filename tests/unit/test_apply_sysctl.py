"""Converging sysctls: runtime writes to /proc/sys and /etc/sysctl.d/zz-quietcore.conf, on the
real settings and readings of the lab capture (see apply_hosts)."""

from __future__ import annotations

import pytest
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes

from quietcore.knobs.base import Setting
from quietcore.knobs.sysctl import CONF, SysctlKnob
from quietcore.readings import Readings
from quietcore.steps import UnsafeStepError, Write

KNOB = SysctlKnob()


def _steps(key: str, value: str | None) -> dict[str, str]:
    return writes(KNOB.steps_to_set(key, value, lab_readings(), lab_topology()))


def test_desired_values_are_written_to_proc_sys() -> None:
    results = lab_results("sysctl")
    assert len(results) == 16
    for key, result in results.items():
        path = "/proc/sys/" + key.removeprefix("sysctl/").replace(".", "/")
        assert _steps(key, result.setting.desired) == {path: result.setting.desired}
    # Lists go space-separated (the kernel reads them so), negative numbers as they are.
    assert _steps("sysctl/net.ipv4.tcp_rmem", "4096 87380 16777216") == {
        "/proc/sys/net/ipv4/tcp_rmem": "4096 87380 16777216"
    }
    assert _steps("sysctl/kernel.sched_rt_runtime_us", "-1") == {
        "/proc/sys/kernel/sched_rt_runtime_us": "-1"
    }
    assert KNOB.boot_script is False  # sysctl.d brings them back at boot


def test_rollback_writes_back_exactly_what_was_read() -> None:
    readings = lab_readings()
    for key, result in lab_results("sysctl").items():
        assert result.actual is not None
        [(path, value)] = _steps(key, result.actual).items()
        raw = readings.text(path)
        assert raw is not None
        # The kernel prints tabs between numbers and reads spaces: the same numbers, in order.
        assert value == " ".join(raw.split())
    assert readings.text("/proc/sys/net/ipv4/tcp_rmem") == "4096\t131072\t6291456"
    assert _steps("sysctl/net.ipv4.tcp_rmem", "4096 131072 6291456") == {
        "/proc/sys/net/ipv4/tcp_rmem": "4096 131072 6291456"
    }
    # A sysctl absent before (a module not loaded then) has nothing to restore.
    assert _steps("sysctl/net.core.busy_poll", None) == {}


def _setting(name: str, value: str, field: str, source: str | None) -> Setting:
    return Setting(f"sysctl/{name}", "sysctl", value, field, source)


def test_native_file_states_every_value_with_its_origin() -> None:
    settings = [
        _setting("vm.swappiness", "10", "memory.swappiness", "site.yaml:4"),
        _setting("net.ipv4.tcp_rmem", "4096 87380 16777216", "network.tcp.rmem", None),
    ]
    [file] = KNOB.native_files(settings, Readings(), lab_topology())
    assert (file.path, file.family, file.activate, file.reboot, file.mode) == (
        CONF,
        "sysctl",
        (),
        False,
        "0644",
    )
    assert file.content == (
        "# Owned by quietcore: rendered in full at every apply, edits here are overwritten;\n"
        "# `quietcore rollback` removes this file. Named zz-quietcore.conf so that it sorts\n"
        "# after Debian's 99-sysctl.conf and its values win. Each value follows a comment\n"
        "# naming the profile field it comes from and where that field was declared\n"
        "# (sysctl.d has no end-of-line comments).\n"
        "\n"
        "# network.tcp.rmem (source unknown)\n"
        "net.ipv4.tcp_rmem = 4096 87380 16777216\n"
        "\n"
        "# memory.swappiness (site.yaml:4)\n"
        "vm.swappiness = 10\n"
    )
    assert KNOB.managed_paths == (CONF,)
    assert sorted([CONF.rsplit("/", 1)[1], "99-sysctl.conf"])[-1] == "zz-quietcore.conf"


def test_native_file_is_deterministic_and_idempotent() -> None:
    settings = [r.setting for r in lab_results("sysctl").values()]
    [first] = KNOB.native_files(settings, lab_readings(), lab_topology())
    # What the host reads after the apply: every sysctl at its desired value.
    after = Readings({"/proc/sys/" + s.key[7:].replace(".", "/"): (s.desired,) for s in settings})
    [again] = KNOB.native_files(list(reversed(settings)), after, lab_topology())
    assert again == first
    # Every setting is stated once, under the comment naming its field and source.
    lines = first.content.splitlines()
    for setting in settings:
        line = f"{setting.key[7:]} = {setting.desired}"
        assert lines.count(line) == 1
        assert lines[lines.index(line) - 1] == f"# {setting.field} ({setting.source})"
    assert "builtin:trading.yaml:45" in first.content
    assert KNOB.native_files([], lab_readings(), lab_topology()) == ()


@pytest.mark.parametrize(
    "key",
    [
        "net.core.busy_poll",  # no family prefix
        "sysctl/net..core",
        "sysctl/../../etc/passwd",
        "sysctl/net/core/busy_poll",
        "sysctl/net.core.busy poll",
        "sysctl/net.core.busy_poll\n",
        "sysctl/kernel",
        "sysctl/-kernel.panic",
    ],
)
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, "1", lab_readings(), lab_topology())
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([Setting(key, "sysctl", "1", "f")], Readings(), lab_topology())


@pytest.mark.parametrize("value", ["", "1\nkernel.panic = 0", "$(reboot)", "1;reboot", "`id`"])
def test_unsafe_values_are_refused(value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set("sysctl/kernel.panic", value, lab_readings(), lab_topology())
    setting = Setting("sysctl/kernel.panic", "sysctl", value, "kernel.sysctl.kernel.panic")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], Readings(), lab_topology())


def test_comment_text_cannot_start_a_setting_line() -> None:
    setting = Setting("sysctl/kernel.panic", "sysctl", "0", "f", "a.yaml\nkernel.panic = 1")
    [file] = KNOB.native_files([setting], Readings(), lab_topology())
    assert "kernel.panic = 1" not in file.content.splitlines()
    assert "# f (a.yaml?kernel.panic = 1)" in file.content
    assert Write("/proc/sys/kernel/panic", "0") in KNOB.steps_to_set(
        setting.key, "0", Readings(), lab_topology()
    )
