"""The whole trading verify on a real capture from the 4-CPU, 2-node lab VM.

A capture from a multi-socket, multi-node guest with a multi-queue NIC and systemd as PID 1:
the shapes this Firecracker development VM cannot show.
"""

from __future__ import annotations

import pytest
from tests.bundles import load_readings

from quietcore.audit import HostAudit, audit_host
from quietcore.profile.load import load_profile
from quietcore.readings import HostRead
from quietcore.topology import parse_topology

CAPTURE = "lab-4cpu-2node-trading"


@pytest.fixture(scope="module")
def audit() -> HostAudit:
    readings = load_readings(CAPTURE)
    return audit_host(load_profile("trading"), HostRead("lab", readings, None, 0.0))


def _result(audit: HostAudit, key: str) -> tuple[str | None, str]:
    [result] = [r for r in audit.results if r.setting.key == key]
    return result.actual, result.status


def test_topology_has_two_sockets_two_nodes_and_a_four_queue_nic() -> None:
    topology = parse_topology(load_readings(CAPTURE))
    assert topology.online == frozenset(range(4))
    assert {node.id: node.cpus for node in topology.nodes.values()} == {
        0: frozenset({0, 1}),
        1: frozenset({2, 3}),
    }
    assert {cpu.package_id for cpu in topology.cpus.values()} == {0, 1}
    data_nic = topology.interfaces["enp0s2"]
    assert (data_nic.rx_queues, data_nic.tx_queues) == (4, 4)
    assert len(data_nic.irqs) == 9  # config vector + 4 rx + 4 tx (MSI-X, vectors=10)


def test_trading_reserves_the_first_core_of_each_node(audit: HostAudit) -> None:
    assert audit.cpus is not None
    assert audit.cpus.reserved == frozenset({0, 2})
    assert audit.cpus.isolated == frozenset({1, 3})


def test_untuned_lab_drifts_where_expected(audit: HostAudit) -> None:
    assert audit.status == "drift"
    assert _result(audit, "cmdline/isolcpus") == (None, "drift")
    assert _result(audit, "isolation/isolated") == ("", "drift")
    assert _result(audit, "vm/thp_enabled") == ("always", "drift")
    assert _result(audit, "systemd/pid1_cpus_allowed") == ("0-3", "drift")
    assert _result(audit, "nic/enp0s2/channels/combined") == ("4", "drift")
    statuses = {r.status for r in audit.results if r.setting.key.startswith("irq/")}
    assert "drift" in statuses
