"""Every object ``quietcore k8s render`` makes, checked offline against Kubernetes' own schemas.

Cluster objects go through kubernetes-validate in strict mode (unknown fields are errors) for
three supported Kubernetes versions. It has no schema for KubeletConfiguration, so the kubelet
drop-in is checked against the field names and Go types of kubelet.config.k8s.io/v1beta1
captured from the Kubernetes source (``tests/data/k8s/README.md`` says where and which).
Rules only the API server or the kubelet enforce (hugepages requests equal limits, whole CPUs,
reservedMemory adding up) are asserted in ``test_k8s_render``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]  # no stubs or py.typed
import pytest
import yaml
from tests.bundles import load_readings

from quietcore.k8s.pool import PoolValues, declared_topology, pool_values
from quietcore.k8s.render import render_pool
from quietcore.k8s.templates import verifier_script
from quietcore.profile.load import load_profile
from quietcore.topology import parse_topology

VERSIONS = ("1.33.0", "1.35.0", "1.37.0")
KUBELET_FIELDS = json.loads(
    (Path(__file__).parents[1] / "data" / "k8s" / "kubelet-config-v1beta1.json").read_text()
)
LAB = parse_topology(load_readings("lab-4cpu-2node-trading"))
LISTED = """name: listed
extends: trading
cpu: {reserved: "0-1", isolated: "2-7"}
containers:
  kubelet:
    eviction_hard: {memory.available: 200Mi, nodefs.available: 10%}
"""


def _pools(tmp_path: Path) -> list[PoolValues]:
    """trading on the two-node lab host with and without a taint, and a profile with CPU
    lists and an eviction threshold rendered without a node."""
    trading = load_profile("trading")
    listed_file = tmp_path / "listed.yaml"
    listed_file.write_text(LISTED)
    listed = load_profile(str(listed_file))
    return [
        pool_values(trading, LAB, "trading"),
        pool_values(trading, LAB, "trading", taint="NoSchedule"),
        pool_values(listed, declared_topology(listed.profile), "listed", taint="NoExecute"),
    ]


def _documents(tmp_path: Path) -> list[tuple[str, dict[str, Any]]]:
    documents = []
    for values in _pools(tmp_path):
        for path, text in render_pool(values, verifier_script()).items():
            if path.endswith((".yaml", ".conf")):
                documents.append((f"{values.pool}:{path}", yaml.safe_load(text)))
    return documents


@pytest.mark.parametrize("version", VERSIONS)
def test_every_cluster_object_is_valid_in_strict_mode(tmp_path: Path, version: str) -> None:
    checked = set()
    for _, document in _documents(tmp_path):
        if document["kind"] == "KubeletConfiguration":
            continue
        kubernetes_validate.validate(document, version, strict=True)
        checked.add(document["kind"])
    assert checked == {"Node", "Namespace", "RuntimeClass", "ConfigMap", "DaemonSet", "Pod"}


@pytest.mark.parametrize(
    ("path", "value"),
    [
        # An unknown field: only strict mode sees it.
        (("spec", "template", "spec", "containers", 0, "securityContex"), {}),
        # A wrong type.
        (("spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"), "9464"),
    ],
)
def test_the_validation_can_fail(
    tmp_path: Path, path: tuple[str | int, ...], value: object
) -> None:
    daemonset = next(d for _, d in _documents(tmp_path) if d["kind"] == "DaemonSet")
    node: Any = daemonset
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(daemonset, VERSIONS[0], strict=True)


def test_kubernetes_validate_has_no_kubelet_schema() -> None:
    # Why the drop-in is checked against the captured fields instead.
    drop_in = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
    with pytest.raises(kubernetes_validate.SchemaNotFoundError):
        kubernetes_validate.validate(drop_in, VERSIONS[-1], strict=True)


# --- The kubelet drop-in against kubelet.config.k8s.io/v1beta1 --------------------------------


def _fits(value: object, go_type: str) -> bool:
    """Whether a decoded YAML value fits a Go field type of KubeletConfiguration, as the
    kubelet's strict JSON decoding wants it (quantities and CPU lists are strings)."""
    go_type = go_type.removeprefix("*")
    scalars: dict[str, type | tuple[type, ...]] = {
        "string": str,
        "bool": bool,
        "int32": int,
        "int64": int,
        "float64": (int, float),
        "metav1.Duration": str,
    }
    if go_type in scalars:
        expected = scalars[go_type]
        return isinstance(value, expected) and not (go_type != "bool" and isinstance(value, bool))
    if go_type in {"map[string]string", "v1.ResourceList"}:
        return isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        )
    if go_type.startswith("[]"):
        item_type = go_type[2:]
        return isinstance(value, list) and all(_fits(item, item_type) for item in value)
    struct = KUBELET_FIELDS["types"].get(go_type)
    if isinstance(struct, dict):
        return (
            isinstance(value, dict)
            and set(value) == set(struct)
            and all(_fits(value[name], struct[name]) for name in struct)
        )
    if isinstance(struct, str):
        return _fits(value, struct)
    raise AssertionError(f"no rule for Go type {go_type}: extend _fits")


def kubelet_problems(document: dict[str, Any]) -> list[str]:
    problems = []
    if document.get("apiVersion") != KUBELET_FIELDS["apiVersion"]:
        problems.append(f"apiVersion {document.get('apiVersion')!r}")
    if document.get("kind") != KUBELET_FIELDS["kind"]:
        problems.append(f"kind {document.get('kind')!r}")
    fields = KUBELET_FIELDS["fields"]
    for name, value in document.items():
        if name in ("apiVersion", "kind"):
            continue
        if name not in fields:
            problems.append(f"{name}: not a KubeletConfiguration field")
        elif not _fits(value, fields[name]):
            problems.append(f"{name}: {value!r} is not a {fields[name]}")
        elif name in KUBELET_FIELDS["enums"] and value not in KUBELET_FIELDS["enums"][name]:
            problems.append(f"{name}: {value!r} not one of {KUBELET_FIELDS['enums'][name]}")
    return problems


def test_the_drop_in_uses_only_upstream_fields_and_types(tmp_path: Path) -> None:
    drop_ins = [d for _, d in _documents(tmp_path) if d["kind"] == "KubeletConfiguration"]
    assert len(drop_ins) == 3
    seen_fields: set[str] = set()
    for drop_in in drop_ins:
        assert kubelet_problems(drop_in) == []
        seen_fields |= set(drop_in)
    # Every field quietcore renders was checked at least once.
    assert seen_fields >= {
        "cpuManagerPolicy",
        "cpuManagerPolicyOptions",
        "topologyManagerPolicy",
        "topologyManagerScope",
        "memoryManagerPolicy",
        "reservedSystemCPUs",
        "systemReserved",
        "kubeReserved",
        "evictionHard",
        "reservedMemory",
    }


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("reservedSystemCpus", "0", "not a KubeletConfiguration field"),
        ("reservedSystemCPUs", 0, "is not a string"),
        ("cpuManagerPolicyOptions", {"full-pcpus-only": True}, "is not a map[string]string"),
        ("reservedMemory", [{"numaNode": "0", "limits": {"memory": "1Gi"}}], "MemoryReservation"),
        ("reservedMemory", [{"node": 0, "limits": {"memory": "1Gi"}}], "MemoryReservation"),
        ("topologyManagerPolicy", "single-numa", "not one of"),
    ],
)
def test_the_kubelet_check_can_fail(field: str, value: object, problem: str) -> None:
    document = {"apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration"}
    [found] = kubelet_problems({**document, field: value})
    assert problem in found
