"""The PerformanceProfile export is valid against the operator's own v2 CRD schema
(``tests/data/export/``, captured from openshift/cluster-node-tuning-operator) and says the
same CPUs, hugepages and kubelet settings as the quietcore profile resolved for a host."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from tests.unit.test_builtin_profiles import TOPOLOGY

from quietcore.export.performanceprofile import (
    KUBELET_ANNOTATION,
    export_performance_profile,
    performance_profile,
)
from quietcore.profile.cpuset import parse_cpulist
from quietcore.profile.errors import ResolveError
from quietcore.profile.load import load_profile

CRD_VERSION = (
    Path(__file__).resolve().parents[1]
    / "data"
    / "export"
    / ("performanceprofile-v2.crd-version.yaml")
)


def strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused, as the API server's strict field validation
    does (a structural CRD otherwise prunes them silently); ``metadata`` stays open."""
    schema = copy.deepcopy(schema)

    def close(node: dict[str, Any], path: str) -> None:
        if node.get("type") == "object" and "properties" in node and path != ".metadata":
            node.setdefault("additionalProperties", False)
        for name, child in node.get("properties", {}).items():
            close(child, f"{path}.{name}")
        if "items" in node:
            close(node["items"], f"{path}[]")

    close(schema, "")
    return schema


def _schema() -> dict[str, Any]:
    [version] = yaml.safe_load(CRD_VERSION.read_text())
    assert version["name"] == "v2" and version["storage"] is True
    return strict(version["schema"]["openAPIV3Schema"])


VALIDATOR = jsonschema.Draft7Validator(_schema())


def errors(document: dict[str, Any]) -> list[str]:
    return [error.message for error in VALIDATOR.iter_errors(document)]


@pytest.mark.parametrize("name", ["cpu-partitioning", "realtime", "trading"])
def test_export_is_valid_against_the_crd(name: str) -> None:
    [(file, text)] = export_performance_profile(
        load_profile(name), TOPOLOGY, "rt-pool"
    ).files.items()
    document = yaml.safe_load(text)
    assert file == "rt-pool.yaml"
    assert errors(document) == []
    assert document["apiVersion"] == "performance.openshift.io/v2"
    assert document["kind"] == "PerformanceProfile"


def test_strict_schema_catches_what_the_export_must_never_write() -> None:
    document, _ = performance_profile(load_profile("trading"), TOPOLOGY)
    misspelt = copy.deepcopy(document)
    misspelt["spec"]["cpu"]["isolatedCpus"] = misspelt["spec"]["cpu"].pop("isolated")
    wrong_type = copy.deepcopy(document)
    wrong_type["spec"]["hugepages"]["pages"][0]["count"] = "2"
    assert errors(misspelt)  # unknown field and missing required isolated
    assert errors(wrong_type)


def test_cpus_hugepages_and_kubelet_match_the_profile() -> None:
    document, notes = performance_profile(load_profile("trading"), TOPOLOGY, "trading")
    spec = document["spec"]
    reserved, isolated = (
        parse_cpulist(spec["cpu"]["reserved"]),
        parse_cpulist(spec["cpu"]["isolated"]),
    )
    # The CRD asks for reserved and isolated to be complementary over the online CPUs.
    assert reserved | isolated == TOPOLOGY.online and not reserved & isolated
    assert reserved == {0, 4}  # first core of each NUMA node of the test topology
    assert spec["cpu"]["balanceIsolated"] is False  # isolcpus with the domain flag
    assert spec["hugepages"] == {
        "defaultHugepagesSize": "1G",
        "pages": [{"size": "1G", "count": 2, "node": 0}],
    }
    assert spec["numa"] == {"topologyPolicy": "single-numa-node"}
    assert spec["globallyDisableIrqLoadBalancing"] is True
    assert spec["net"] == {"userLevelNetworking": True, "devices": [{"interfaceName": "e*"}]}
    assert spec["nodeSelector"] == {"node-role.kubernetes.io/trading": ""}
    assert json.loads(document["metadata"]["annotations"][KUBELET_ANNOTATION]) == {
        "cpuManagerPolicyOptions": {"full-pcpus-only": "true"},
        "topologyManagerScope": "pod",
        "systemReserved": {"memory": "500Mi"},
        "kubeReserved": {"memory": "500Mi"},
    }
    assert "skew_tick=1" in spec["additionalKernelArgs"]
    assert "irqaffinity=0,4" in spec["additionalKernelArgs"]
    # What has no PerformanceProfile field is named, not dropped silently.
    assert "kernel.sysctl" in notes and "network.interfaces.0.coalesce (e*)" in notes


def test_literal_cpu_lists_need_no_host(tmp_path: Path) -> None:
    profile = tmp_path / "lit.yaml"
    profile.write_text(
        "name: lit\ncpu: {reserved: '0-1', isolated: '2-7', isolation: [nohz_full]}\n"
    )
    document, _ = performance_profile(load_profile(str(profile)))
    assert document["spec"]["cpu"] == {"reserved": "0-1", "isolated": "2-7"}
    assert errors(document) == []


def test_host_dependent_cpus_without_a_host_are_refused_naming_the_field() -> None:
    with pytest.raises(ResolveError) as refused:
        performance_profile(load_profile("trading"))
    assert refused.value.field == "cpu.reserved.per_numa_node"


def test_profile_without_partitioning_is_refused() -> None:
    with pytest.raises(ResolveError, match="needs both reserved and isolated"):
        performance_profile(load_profile("network-latency"), TOPOLOGY)


def test_pool_must_be_a_node_role() -> None:
    with pytest.raises(ResolveError, match="not a valid node role"):
        performance_profile(load_profile("trading"), TOPOLOGY, "Trading_Pool")
