"""Converging the nic family: ethtool runs and steering-mask writes, replayed at boot.

``trading`` on the real lab capture (virtio NICs enp0s1, 1 queue, and enp0s2, 4 queues, read
with ethtool), and the Firecracker captures for RPS (eth0's rx-0 mask 0 as booted, 1 tuned;
see platform_knob_hosts).
"""

from __future__ import annotations

import dataclasses

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context
from tests.unit.lab_apply_hosts import lab_readings, lab_results, lab_topology, writes
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.nic import NicKnob, checked_interface
from quietcore.readings import Readings
from quietcore.steps import Run, Step, UnsafeStepError

KNOB = NicKnob()
VM = capture_topology("platform-vm-default")
RPS = "/sys/class/net/eth0/queues/rx-0/rps_cpus"


def _runs(steps: tuple[Step, ...]) -> list[tuple[str, ...]]:
    assert all(isinstance(step, Run) and not step.systemd_only for step in steps), steps
    return [step.argv for step in steps if isinstance(step, Run)]


def test_lab_steps_for_the_desired_values() -> None:
    runs = []
    for key, result in lab_results("nic").items():
        runs += _runs(
            KNOB.steps_to_set(key, result.setting.desired, lab_readings(), lab_topology())
        )
    assert sorted(runs) == [
        ("ethtool", "-C", "enp0s1", "adaptive-rx", "off"),
        ("ethtool", "-C", "enp0s1", "rx-usecs", "0"),
        ("ethtool", "-C", "enp0s2", "adaptive-rx", "off"),
        ("ethtool", "-C", "enp0s2", "rx-usecs", "0"),
        ("ethtool", "-L", "enp0s1", "combined", "2"),  # channels: reserved = CPUs 0,2
        ("ethtool", "-L", "enp0s2", "combined", "2"),
    ]
    assert KNOB.boot_script
    settings = [r.setting for r in lab_results("nic").values()]
    assert KNOB.native_files(settings, lab_readings(), lab_topology()) == ()


def test_lab_rollback_gives_back_what_ethtool_read() -> None:
    for key, result in lab_results("nic").items():
        steps = KNOB.steps_to_set(key, result.actual, lab_readings(), lab_topology())
        if result.actual is None:  # adaptive-rx: n/a on virtio, nothing to restore
            assert steps == ()
            continue
        [argv] = _runs(steps)
        _, interface, _, item = key.split("/")
        assert argv[2:] == (interface, item, result.actual)
    enp0s2 = lab_results("nic")["nic/enp0s2/channels/combined"]
    assert _runs(
        KNOB.steps_to_set(enp0s2.setting.key, enp0s2.actual, Readings(), lab_topology())
    ) == [("ethtool", "-L", "enp0s2", "combined", "4")]


def test_more_channels_or_ring_slots_than_the_driver_offers_are_unsupported() -> None:
    # The lab's management NIC has one queue pair: channels: reserved (2) cannot be set there,
    # so apply skips it instead of failing on ethtool -L.
    enp0s1 = lab_results("nic")["nic/enp0s1/channels/combined"]
    assert (enp0s1.status, enp0s1.actual) == ("unsupported", "1")
    assert enp0s1.reason == "enp0s1 offers at most 1 (combined)"
    assert lab_results("nic")["nic/enp0s2/channels/combined"].status == "drift"  # 4 queues


def test_ring_sizes_go_through_ethtool_g() -> None:
    steps = KNOB.steps_to_set("nic/eth0/rings/tx", "1024", Readings(), VM)
    assert _runs(steps) == [("ethtool", "-G", "eth0", "tx", "1024")]


def test_steering_masks_are_written_as_the_kernel_prints_them() -> None:
    settings = {s.key: s for s in KNOB.desired(context(CAPTURE_PROFILE, VM))}
    rps = settings["nic/eth0/rx-0/rps_cpus"]
    assert writes(KNOB.steps_to_set(rps.key, rps.desired, Readings(), VM)) == {RPS: "1"}
    xps = settings["nic/eth0/tx-0/xps_cpus"]
    path = "/sys/class/net/eth0/queues/tx-0/xps_cpus"
    assert writes(KNOB.steps_to_set(xps.key, xps.desired, Readings(), VM)) == {path: "1"}
    # Rollback: booted mask 0 (no RPS) and the tuned mask 1 are written back as read.
    for capture in ("platform-vm-default", "platform-vm-tuned"):
        readings = load_readings(capture)
        actual = KNOB.observe(rps, readings, VM).actual
        assert actual is not None
        assert writes(KNOB.steps_to_set(rps.key, actual, readings, VM)) == {
            RPS: readings.first_line(RPS)
        }
    # 40 possible CPUs: the kernel's comma-separated 32-bit groups.
    wide = dataclasses.replace(lab_topology(), possible_count=40)
    steps = KNOB.steps_to_set("nic/enp0s2/rx-3/rps_cpus", "0,33", Readings(), wide)
    assert writes(steps) == {"/sys/class/net/enp0s2/queues/rx-3/rps_cpus": "02,00000001"}


def test_a_rule_that_matched_nothing_sets_nothing() -> None:
    assert KNOB.steps_to_set("nic/ens*/match", "ens*", Readings(), VM) == ()
    assert KNOB.steps_to_set("nic/eth0/rx-0/rps_cpus", None, Readings(), VM) == ()


@pytest.mark.parametrize(
    "name",
    ["-s", "eth0/../..", "a b", "eth0:1", 'e"0', "e'0", "sixteen-chars-xx", "", ".", "..", "e$0"],
)
def test_unsafe_interface_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafeStepError):
        checked_interface(name)
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(f"nic/{name}/coalesce/rx-usecs", "0", Readings(), VM)


def test_longest_valid_name_is_accepted() -> None:
    assert checked_interface("enp175s0f1np1.4") == "enp175s0f1np1.4"  # 15 bytes


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("nic/eth0/coalesce/rx-usecs", "fast"),
        ("nic/eth0/coalesce/rx-usecs", "-1"),
        ("nic/eth0/coalesce/adaptive-rx", "1"),
        ("nic/eth0/coalesce/sample-interval", "1"),
        ("nic/eth0/rings/rx-mini", "64"),
        ("nic/eth0/channels/rx", "2"),
        ("nic/eth0/rx-0/xps_cpus", "0"),
        ("nic/eth0/rx-a/rps_cpus", "0"),
        ("nic/eth0/rx-0/rps_cpus", "0;1"),
        ("nic/eth0/rx-0", "0"),
    ],
)
def test_unknown_items_and_bad_values_are_refused(key: str, value: str) -> None:
    with pytest.raises(UnsafeStepError):
        KNOB.steps_to_set(key, value, Readings(), VM)
