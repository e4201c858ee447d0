"""The nic family on real captures of the Firecracker VM (see platform_knob_hosts): eth0 is a
single-queue virtio_net NIC read with ethtool 6.1; ifb0 is virtual; nothing matches ens*.
Tuned, eth0's rx-0 steers to CPU 0. Other hosts' answers are built explicitly from the real
ethtool texts of this VM (e.g. ``ethtool -c lo``)."""

from __future__ import annotations

import dataclasses

import pytest
from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Status
from quietcore.knobs.nic import ETHTOOL_COMMAND, NicKnob, ethtool_answers, ethtool_values
from quietcore.profile.errors import ResolveError
from quietcore.profile.schema import Profile
from quietcore.readings import CommandResult, Readings
from quietcore.topology import Interface

KNOB = NicKnob()
VM = capture_topology("platform-vm-default")


def _verdicts(
    readings: Readings, declared: Profile = CAPTURE_PROFILE
) -> dict[str, tuple[Status, str | None]]:
    return verdicts(KNOB.desired(context(declared, VM)), readings, VM)


def test_booted_vm_eth0_ifb0_and_a_rule_matching_nothing() -> None:
    assert _verdicts(load_readings("platform-vm-default")) == {
        "nic/eth0/coalesce/rx-usecs": ("ok", "0"),
        "nic/eth0/coalesce/tx-usecs": ("drift", "0"),
        "nic/eth0/coalesce/adaptive-rx": ("ok", "off"),
        "nic/eth0/rings/rx": ("ok", "256"),
        "nic/eth0/rings/tx": ("unsupported", "256"),  # 1024 asked, virtio_net's maximum 256
        "nic/eth0/channels/combined": ("ok", "1"),  # channels: reserved = 1 CPU
        "nic/eth0/rx-0/rps_cpus": ("drift", ""),  # mask 0: no RPS
        "nic/eth0/tx-0/xps_cpus": ("unsupported", None),  # single queue: the kernel refuses
        "nic/ifb0/rings/rx": ("unsupported", None),  # virtual: ethtool not run
        "nic/ens*/match": ("missing", None),
    }


def test_tuned_vm_steers_rx_to_the_reserved_cpu() -> None:
    assert _verdicts(load_readings("platform-vm-tuned"))["nic/eth0/rx-0/rps_cpus"] == ("ok", "0")


def test_reasons_name_what_is_missing() -> None:
    settings = {s.key: s for s in KNOB.desired(context(CAPTURE_PROFILE, VM))}
    readings = load_readings("platform-vm-default")
    reason = {key: KNOB.observe(setting, readings, VM).reason for key, setting in settings.items()}
    assert (
        reason["nic/ens*/match"]
        == "no interface matches ens* (this host has: eth0, ifb0, ifb1, lo)"
    )
    assert (
        reason["nic/eth0/tx-0/xps_cpus"] == "XPS needs a multi-queue device; eth0 has one tx queue"
    )
    assert "virtual interface" in reason["nic/ifb0/rings/rx"]


def _ethtool(*lines: str) -> Readings:
    return Readings(commands={ETHTOOL_COMMAND: CommandResult(lines, 0)})


def test_ethtool_absent_or_refusing() -> None:
    # Built explicitly: a host without ethtool, and lo read as if it had a device, with the
    # real answer of `ethtool -c lo` on this VM (exit status 1).
    declared = profile(network={"interfaces": [{"match": "lo", "coalesce": {"rx_usecs": 0}}]})
    assert _verdicts(_ethtool("@nic-absent"), declared) == {
        "nic/lo/coalesce/rx-usecs": ("unsupported", None)
    }
    refused = _ethtool("@nic lo -c", "netlink error: Operation not supported", "@nic-rc 1")
    assert _verdicts(refused, declared) == {"nic/lo/coalesce/rx-usecs": ("unsupported", None)}
    [setting] = KNOB.desired(context(declared, VM))
    assert (
        KNOB.observe(setting, refused, VM).reason
        == "ethtool -c lo: netlink error: Operation not supported"
    )


def test_ethtool_values_take_current_settings_not_maximums() -> None:
    answers = ethtool_answers(load_readings("platform-vm-default"))
    assert answers is not None
    assert sorted(answers) == [("eth0", "-c"), ("eth0", "-g"), ("eth0", "-l")]
    rings = ethtool_values(answers["eth0", "-g"].lines, "Current hardware settings")
    assert (rings["RX"], rings["TX"], rings["TX Push"]) == ("256", "256", "off")
    coalesce = ethtool_values(answers["eth0", "-c"].lines, None)
    assert (coalesce["adaptive-rx"], coalesce["adaptive-tx"], coalesce["rx-frames"]) == (
        "off",
        "n/a",
        "1",
    )


MULTIQUEUE = Interface("ens1f0", "ice", 1, tuple(range(100, 108)), rx_queues=4, tx_queues=4)


def test_desired_per_queue_and_channels_from_a_cpu_set() -> None:
    host = dataclasses.replace(
        synthetic_host(),
        interfaces={"ens1f0": MULTIQUEUE, "lo": Interface("lo", None, None, (), 1, 1)},
    )
    declared = profile(
        cpu={"reserved": "0,4", "isolated": "rest"},
        network={
            "interfaces": [{"match": "ens*", "channels": "reserved", "rps": "reserved", "xps": "0"}]
        },
    )
    settings = list(KNOB.desired(context(declared, host, reserved=frozenset({0, 4}))))
    assert {s.key: (s.desired, s.field) for s in settings} == {
        "nic/ens1f0/channels/combined": ("2", "network.interfaces.0.channels"),
        **{f"nic/ens1f0/rx-{q}/rps_cpus": ("0,4", "network.interfaces.0.rps") for q in range(4)},
        **{f"nic/ens1f0/tx-{q}/xps_cpus": ("0", "network.interfaces.0.xps") for q in range(4)},
    }
    assert KNOB.reads(declared).files == (
        "/sys/class/net/*/queues/rx-*/rps_cpus",
        "/sys/class/net/*/queues/tx-*/xps_cpus",
    )
    assert [name for name, _ in KNOB.reads(declared).commands] == [ETHTOOL_COMMAND]
    steering_only = profile(network={"interfaces": [{"match": "ens*", "rps": "0"}]})
    assert KNOB.reads(steering_only).commands == ()


def test_two_rules_for_one_interface() -> None:
    host = dataclasses.replace(synthetic_host(), interfaces={"ens1f0": MULTIQUEUE})
    same = profile(
        network={
            "interfaces": [
                {"match": "ens*", "rings": {"rx": 512}},
                {"match": "ens1f0", "rings": {"rx": 512}},
            ]
        }
    )
    assert [s.key for s in KNOB.desired(context(same, host))] == ["nic/ens1f0/rings/rx"]
    clash = profile(
        network={
            "interfaces": [
                {"match": "ens*", "rings": {"rx": 512}},
                {"match": "ens1f0", "rings": {"rx": 1024}},
            ]
        }
    )
    with pytest.raises(ResolveError) as refused:
        list(KNOB.desired(context(clash, host)))
    assert refused.value.field == "network.interfaces.1.rings.rx"
