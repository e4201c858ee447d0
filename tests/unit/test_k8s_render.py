"""``quietcore k8s render``: a node pool's files from a profile and a node's topology.

Topologies: the real lab capture ``lab-4cpu-2node-trading`` (2 NUMA nodes, CPUs 0-1 / 2-3),
synthetic hosts built explicitly, and for the command line this machine itself (@local).
What the Kubernetes schemas say about the objects is in ``test_k8s_validate``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.bundles import load_readings
from tests.conftest import run_cli
from tests.unit.knob_hosts import synthetic_host

from quietcore.engine import FanOut, read_hosts
from quietcore.k8s.node_checks import checks_json
from quietcore.k8s.pool import (
    PoolError,
    PoolValues,
    check_pool_name,
    declared_topology,
    pool_values,
)
from quietcore.k8s.render import VERIFIER_COMMAND, as_stream, render_pool
from quietcore.k8s.templates import verifier_script
from quietcore.knobs.kubelet import KubeletKnob, quantity_bytes
from quietcore.profile.cpuset import format_cpulist
from quietcore.profile.errors import ProfileError, ResolveError
from quietcore.profile.load import load_profile
from quietcore.profile.loaded import LoadedProfile
from quietcore.readings import Readings
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

LAB = parse_topology(load_readings("lab-4cpu-2node-trading"))
TRADING = load_profile("trading")
MiB = 1024 * 1024


def _render(values: PoolValues) -> dict[str, Any]:
    """Every YAML file of the pool, parsed, by path."""
    files = render_pool(values, verifier_script())
    return {
        path: yaml.safe_load(text)
        for path, text in files.items()
        if path.endswith((".yaml", ".conf"))
    }


def _loaded(tmp_path: Path, text: str) -> LoadedProfile:
    path = tmp_path / "pool.yaml"
    path.write_text(text)
    return load_profile(str(path))


def _reserved_memory(document: dict[str, Any]) -> dict[int, int]:
    return {
        entry["numaNode"]: int(quantity_bytes(entry["limits"]["memory"]))
        for entry in document["reservedMemory"]
    }


def test_the_pool_files_of_trading_on_a_two_node_host() -> None:
    values = pool_values(TRADING, LAB, "trading", taint="NoSchedule")
    files = render_pool(values, verifier_script())
    assert list(files) == [
        "node/90-quietcore.conf",
        "node/node-labels.yaml",
        "node/label-nodes.sh",
        "cluster/00-namespace.yaml",
        "cluster/10-runtimeclass.yaml",
        "cluster/20-verifier-configmap.yaml",
        "cluster/21-verifier-daemonset.yaml",
        "examples/guaranteed-pod.yaml",
    ]
    assert (values.reserved, values.isolated, values.numa_nodes) == (
        frozenset({0, 2}),
        frozenset({1, 3}),
        (0, 1),
    )
    # The drop-in is byte for byte what apply writes on such a node.
    [apply_file] = KubeletKnob().native_files(list(values.kubelet), Readings({}), LAB)
    assert files["node/90-quietcore.conf"] == apply_file.content
    labels = yaml.safe_load(files["node/node-labels.yaml"])
    assert labels["metadata"]["labels"] == {"quietcore.io/pool": "trading"}
    assert (
        "kubectl taint node \"$node\" 'quietcore.io/pool=trading:NoSchedule'"
        in (files["node/label-nodes.sh"])
    )


def test_reserved_memory_adds_up_to_what_node_allocatable_holds_back() -> None:
    # trading: 500Mi system + 500Mi kube + the kubelet's default 100Mi eviction threshold,
    # split over the NUMA nodes of the housekeeping CPUs (0 on node 0, 2 on node 1).
    drop_in = _render(pool_values(TRADING, LAB, "trading"))["node/90-quietcore.conf"]
    assert drop_in["memoryManagerPolicy"] == "Static"
    assert _reserved_memory(drop_in) == {0: 550 * MiB, 1: 550 * MiB}


def _kubelet_profile(tmp_path: Path, reserved: str, eviction: str = "") -> LoadedProfile:
    return _loaded(
        tmp_path,
        f"""name: pool-test
cpu: {{reserved: "{reserved}", isolated: rest}}
containers:
  kubelet:
    cpu_manager_policy: static
    memory_manager_policy: Static
    reserved_system_cpus: reserved
    system_reserved: {{memory: 1Gi, cpu: 500m}}
    kube_reserved: {{memory: "300000000"}}
{eviction}""",
    )


@pytest.mark.parametrize(
    ("reserved", "nodes"),
    [("0", {0}), ("0,4", {0, 1}), ("4-5", {1})],
)
def test_reserved_memory_follows_the_housekeeping_cpus(
    tmp_path: Path, reserved: str, nodes: set[int]
) -> None:
    eviction = "    eviction_hard: {memory.available: 250Mi, nodefs.available: 10%}\n"
    loaded = _kubelet_profile(tmp_path, reserved, eviction)
    host = synthetic_host(cpus=8, nodes=2)  # CPUs 0-3 on node 0, 4-7 on node 1
    drop_in = _render(pool_values(loaded, host, "p"))["node/90-quietcore.conf"]
    shares = _reserved_memory(drop_in)
    assert set(shares) == nodes
    # Exact to the byte, however the total divides (300000000 bytes is no whole MiB).
    assert sum(shares.values()) == 1024 * MiB + 300_000_000 + 250 * MiB
    assert max(shares.values()) - min(shares.values()) <= 1
    assert drop_in["evictionHard"] == {"memory.available": "250Mi", "nodefs.available": "10%"}


def test_a_percentage_threshold_cannot_size_reserved_memory(tmp_path: Path) -> None:
    eviction = "    eviction_hard: {memory.available: 5%}\n"
    with pytest.raises(ProfileError, match="must be a quantity"):
        _kubelet_profile(tmp_path, "0", eviction)


def test_the_kubelet_reports_reserved_memory_in_any_unit() -> None:
    # Built explicitly: a configuration whose reservedMemory is written in bytes and Gi.
    profile_settings = [
        s for s in pool_values(TRADING, LAB, "trading").kubelet if s.key == "kubelet/reservedMemory"
    ]
    [setting] = profile_settings
    assert setting.desired == "0:memory=550Mi;1:memory=550Mi"
    config = (
        "kind: KubeletConfiguration",
        "reservedMemory:",
        "  - {numaNode: 1, limits: {memory: 576716800}}",
        "  - {numaNode: 0, limits: {memory: 0.537109375Gi}}",
    )
    readings = Readings({"/var/lib/kubelet/config.yaml": config})
    seen = KubeletKnob().observe(setting, readings, LAB)
    assert (seen.actual, seen.status) == ("0:memory=550Mi;1:memory=550Mi", None)
    broken = Readings(
        {"/var/lib/kubelet/config.yaml": ("kind: KubeletConfiguration", "reservedMemory: 5")}
    )
    assert KubeletKnob().observe(setting, broken, LAB).status == "drift"


def test_the_verifier_gets_the_script_and_the_checks() -> None:
    values = pool_values(TRADING, LAB, "trading", taint="NoExecute")
    files = _render(values)
    configmap = files["cluster/20-verifier-configmap.yaml"]
    assert configmap["data"]["qc_node_verifier.py"] == verifier_script()
    checks = configmap["data"]["checks.json"]
    assert checks == checks_json(values.settings, profile="trading", digest=TRADING.digest)
    assert json.loads(checks)["schema"] == "quietcore.node-checks/v1"

    daemonset = files["cluster/21-verifier-daemonset.yaml"]
    pod = daemonset["spec"]["template"]
    spec = pod["spec"]
    [container] = spec["containers"]
    assert container["image"] == "python:3.12-slim"
    assert container["command"] == list(VERIFIER_COMMAND)
    assert container["command"][-1] == "9464"
    assert container["ports"] == [{"name": "metrics", "containerPort": 9464, "protocol": "TCP"}]
    assert container["securityContext"] == {
        "privileged": False,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "capabilities": {"drop": ["ALL"]},
    }
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] != 0
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert set(mounts) == {"/opt/quietcore", "/host/proc", "/host/sys"}
    assert all(mount["readOnly"] for mount in mounts.values())
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["host-proc"]["hostPath"]["path"] == "/proc"
    assert volumes["host-sys"]["hostPath"]["path"] == "/sys"
    assert volumes["quietcore"]["configMap"]["name"] == configmap["metadata"]["name"]
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "9464"
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert spec["nodeSelector"] == {"quietcore.io/pool": "trading"}
    assert spec["tolerations"] == [
        {"key": "quietcore.io/pool", "operator": "Equal", "value": "trading", "effect": "NoExecute"}
    ]
    # The pod selector picks the pod template's labels.
    selector = daemonset["spec"]["selector"]["matchLabels"]
    assert selector.items() <= pod["metadata"]["labels"].items()


def test_new_checks_roll_the_verifier_pods() -> None:
    values = pool_values(TRADING, LAB, "trading")

    def digest(script: str) -> str:
        daemonset = yaml.safe_load(
            render_pool(values, script)["cluster/21-verifier-daemonset.yaml"]
        )
        annotation: str = daemonset["spec"]["template"]["metadata"]["annotations"][
            "quietcore.io/config-digest"
        ]
        return annotation

    assert digest("print(1)\n") != digest("print(2)\n")


def test_the_guaranteed_example_gets_whole_cores_and_hugepages() -> None:
    # The lab VM has no SMT: whole CPUs of one thread. A host with 2 threads per core must ask
    # for 2 under full-pcpus-only.
    for topology, cpus in ((LAB, "1"), (_smt_host(), "2")):
        pod = _render(pool_values(TRADING, topology, "trading"))["examples/guaranteed-pod.yaml"]
        [container] = pod["spec"]["containers"]
        resources = container["resources"]
        assert resources["requests"] == resources["limits"]
        assert resources["requests"] == {"cpu": cpus, "memory": "1Gi", "hugepages-1Gi": "1Gi"}
        assert pod["spec"]["runtimeClassName"] == "quietcore-trading"
        assert pod["spec"]["nodeSelector"] == {"quietcore.io/pool": "trading"}
        assert pod["spec"]["volumes"] == [
            {"name": "hugepages", "emptyDir": {"medium": "HugePages-1Gi"}}
        ]
        assert "tolerations" not in pod["spec"]  # no taint asked for


def _smt_host() -> Topology:
    host = synthetic_host(cpus=8, nodes=2)
    cpus = {
        cpu: type(info)(
            info.id, info.id // 2, info.package_id, info.node, frozenset({cpu ^ 1, cpu})
        )
        for cpu, info in host.cpus.items()
    }
    sizes = (2048, 1048576)
    return type(host)(**{**host.__dict__, "cpus": cpus, "hugepage_sizes_kib": sizes})


def test_the_runtime_class_schedules_onto_the_pool() -> None:
    values = pool_values(TRADING, LAB, "fast-1", taint="NoSchedule")
    runtime_class = _render(values)["cluster/10-runtimeclass.yaml"]
    assert runtime_class["metadata"]["name"] == "quietcore-fast-1"
    assert runtime_class["handler"] == "runc"
    assert runtime_class["scheduling"] == {
        "nodeSelector": {"quietcore.io/pool": "fast-1"},
        "tolerations": [
            {
                "key": "quietcore.io/pool",
                "operator": "Equal",
                "value": "fast-1",
                "effect": "NoSchedule",
            }
        ],
    }


@pytest.mark.parametrize("name", ["", "Trading", "a_b", "-a", "a-", "x;reboot", "a" * 41])
def test_pool_names_that_cannot_be_labels_are_refused(name: str) -> None:
    with pytest.raises(PoolError):
        check_pool_name(name)
    with pytest.raises(PoolError):
        pool_values(TRADING, LAB, name)


def test_a_profile_without_kubelet_is_no_pool() -> None:
    loaded = load_profile("network-latency")
    with pytest.raises(ResolveError) as raised:
        pool_values(loaded, LAB, "p")
    assert raised.value.field == "containers.kubelet"


def test_verifier_text_of_any_shape_survives_the_configmap() -> None:
    # Built explicitly: text a YAML block cannot hold as is falls back to a quoted string.
    values = pool_values(TRADING, LAB, "trading")
    for script in (
        "a: 1\n  # indented: 'quoted' \"double\"\n\n\tx = {}\n",
        "no final newline",
        " leading space\n",
        "trailing blank lines\n\n\n",
        "crlf\r\nline\n",
        "x = '---'\n---\n...\n",
    ):
        files = render_pool(values, script)
        configmap = yaml.safe_load(files["cluster/20-verifier-configmap.yaml"])
        assert configmap["data"]["qc_node_verifier.py"] == script


def test_the_stream_holds_every_yaml_file() -> None:
    files = render_pool(pool_values(TRADING, LAB, "trading"), verifier_script())
    documents = list(yaml.safe_load_all(as_stream(files)))
    kinds = [document["kind"] for document in documents]
    assert kinds == [
        "KubeletConfiguration",
        "Node",
        "Namespace",
        "RuntimeClass",
        "ConfigMap",
        "DaemonSet",
        "Pod",
    ]


# --- The command line -------------------------------------------------------------------------

LISTED_CPUS = """name: listed
extends: trading
cpu: {reserved: "0-1", isolated: "2-7"}
"""


def test_render_without_a_node_needs_cpu_lists(tmp_path: Path) -> None:
    refused = run_cli("k8s", "render", "--profile", "trading", "--pool", "trading")
    assert refused.returncode == 2
    assert "cpu.reserved.per_numa_node: depends on the node's CPUs" in refused.stderr
    assert "builtin:cpu-partitioning.yaml:" in refused.stderr  # file and line of the field
    assert refused.stdout == ""

    profile = tmp_path / "listed.yaml"
    profile.write_text(LISTED_CPUS)
    out = tmp_path / "out"
    done = run_cli(
        "k8s",
        "render",
        "-p",
        str(profile),
        "--pool",
        "listed",
        "--taint",
        "NoSchedule",
        "-o",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert "no --topology-from" in done.stderr
    written = sorted(str(path.relative_to(out)) for path in out.rglob("*") if path.is_file())
    assert written == sorted(render_pool(_listed_values(profile), verifier_script()))
    assert os.access(out / "node" / "label-nodes.sh", os.X_OK)
    drop_in = yaml.safe_load((out / "node" / "90-quietcore.conf").read_text())
    assert drop_in["reservedSystemCPUs"] == "0-1"
    assert _reserved_memory(drop_in) == {0: 1100 * MiB}  # one NUMA node assumed, as OpenShift


def _listed_values(profile: Path) -> PoolValues:
    loaded = load_profile(str(profile))
    return pool_values(loaded, declared_topology(loaded.profile), "listed", taint="NoSchedule")


def test_render_reads_the_topology_of_a_node(tmp_path: Path) -> None:
    # This machine, read as any node would be: the concrete CPUs land in the drop-in.
    done = run_cli("k8s", "render", "-p", "trading", "--pool", "here", "--topology-from", "@local")
    assert done.returncode == 0, done.stderr
    documents = {d["kind"]: d for d in yaml.safe_load_all(done.stdout)}
    here = parse_topology(_local_readings())
    values = pool_values(TRADING, here, "here")
    drop_in = documents["KubeletConfiguration"]
    assert drop_in["reservedSystemCPUs"] == format_cpulist(values.reserved)
    assert set(_reserved_memory(drop_in)) == {here.node_of(cpu) for cpu in values.reserved}
    assert documents["ConfigMap"]["data"]["checks.json"] == checks_json(
        values.settings, profile="trading", digest=TRADING.digest
    )


def _local_readings() -> Readings:
    [read] = read_hosts(["@local"], TOPOLOGY_READS, FanOut())
    assert read.readings is not None
    return read.readings


def test_render_refuses_bad_options(tmp_path: Path) -> None:
    bad_pool = run_cli(
        "k8s", "render", "-p", "trading", "--pool", "Bad_Name", "--topology-from", "@local"
    )
    assert bad_pool.returncode == 2
    assert "--pool: pool name 'Bad_Name'" in bad_pool.stderr
    bad_handler = run_cli(
        "k8s", "render", "-p", "trading", "--pool", "p", "--runtime-handler", "runc;x"
    )
    assert bad_handler.returncode == 2
    assert "--runtime-handler" in bad_handler.stderr
