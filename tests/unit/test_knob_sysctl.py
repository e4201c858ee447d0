"""The sysctl family on real captures of the 2-CPU Firecracker VM (see knob_hosts)."""

from __future__ import annotations

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import CAPTURE_PROFILE, context, profile, results, this_vm

from quietcore.facts import bundle_script
from quietcore.knobs.sysctl import SysctlKnob, canonical_value, declared_sysctls, sysctl_path
from quietcore.profile.errors import ResolveError

KNOB = SysctlKnob()


def test_sections_imply_their_sysctls() -> None:
    declared = profile(
        memory={"swappiness": 10},
        numa={"balancing": False},
        network={
            "tcp": {"rmem": [4096, 87380, 16777216], "congestion_control": "bbr"},
            "busy_read_us": 50,
            "netdev_budget_usecs": 8000,
        },
        kernel={"watchdogs": {"nmi": False, "soft": True}, "sysctl": {"vm.stat_interval": 10}},
    )
    assert declared_sysctls(declared) == {
        "vm.swappiness": ("10", "memory.swappiness"),
        "kernel.numa_balancing": ("0", "numa.balancing"),
        "net.ipv4.tcp_rmem": ("4096 87380 16777216", "network.tcp.rmem"),
        "net.ipv4.tcp_congestion_control": ("bbr", "network.tcp.congestion_control"),
        "net.core.busy_read": ("50", "network.busy_read_us"),
        "net.core.netdev_budget_usecs": ("8000", "network.netdev_budget_usecs"),
        "kernel.nmi_watchdog": ("0", "kernel.watchdogs.nmi"),
        "kernel.soft_watchdog": ("1", "kernel.watchdogs.soft"),
        "vm.stat_interval": ("10", "kernel.sysctl.vm.stat_interval"),
    }


def test_one_sysctl_declared_twice_alike_is_one_setting() -> None:
    declared = profile(memory={"swappiness": 10}, kernel={"sysctl": {"vm.swappiness": 10}})
    assert declared_sysctls(declared) == {"vm.swappiness": ("10", "memory.swappiness")}


def test_one_sysctl_declared_twice_differently_names_the_second_field() -> None:
    declared = profile(network={"busy_poll_us": 50}, kernel={"sysctl": {"net.core.busy_poll": 100}})
    with pytest.raises(ResolveError, match=r"already sets it to '50'") as refused:
        list(KNOB.desired(context(declared, this_vm())))
    assert refused.value.field == "kernel.sysctl.net.core.busy_poll"
    assert "network.busy_poll_us" in refused.value.message


def test_values_are_canonical_text() -> None:
    assert canonical_value([4096, 87380, 16777216]) == "4096 87380 16777216"
    assert canonical_value(True) == "1"
    assert canonical_value(-1) == "-1"
    assert canonical_value("4096\t131072  6291456") == "4096 131072 6291456"


def test_reads_one_safe_proc_file_per_sysctl() -> None:
    spec = KNOB.reads(CAPTURE_PROFILE)
    assert sysctl_path("net.core.busy_poll") in spec.files
    assert "/proc/sys/kernel/sched_rt_runtime_us" in spec.files
    assert len(spec.files) == len(declared_sysctls(CAPTURE_PROFILE))
    assert spec.commands == ()
    bundle_script(spec)  # refuses any path the bundle could not read safely


def test_default_vm_drifts_misses_and_matches() -> None:
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, this_vm())))
    seen = results(settings, load_readings("knobs-vm-default"), this_vm())
    assert {key: (r.status, r.actual) for key, r in seen.items()} == {
        "sysctl/vm.swappiness": ("drift", "60"),
        "sysctl/kernel.numa_balancing": ("ok", "0"),
        "sysctl/net.ipv4.tcp_rmem": ("drift", "4096 131072 33554432"),
        "sysctl/net.ipv4.tcp_fastopen": ("drift", "1"),
        "sysctl/net.core.busy_poll": ("drift", "0"),
        "sysctl/kernel.sched_rt_runtime_us": ("ok", "950000"),
        "sysctl/kernel.nmi_watchdog": ("ok", "0"),
        "sysctl/kernel.timer_migration": ("drift", "1"),
        "sysctl/net.core.no_such_knob": ("missing", None),
    }
    missing = seen["sysctl/net.core.no_such_knob"]
    assert missing.reason == "the running kernel has no sysctl net.core.no_such_knob"
    assert not any(r.setting.reboot_required for r in seen.values())
    assert seen["sysctl/vm.swappiness"].setting.source == "test.yaml:memory.swappiness"


def test_tuned_vm_is_ok_where_it_was_set() -> None:
    settings = list(KNOB.desired(context(CAPTURE_PROFILE, this_vm())))
    seen = results(settings, load_readings("knobs-vm-tuned"), this_vm())
    assert {key for key, r in seen.items() if r.status != "ok"} == {"sysctl/net.core.no_such_knob"}
    assert seen["sysctl/net.ipv4.tcp_rmem"].actual == "4096 87380 16777216"
