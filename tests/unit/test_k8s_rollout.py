"""The rollout through the real kubernetes client against the API server test double.

The SSH side (apply/verify on a node) is ``ScriptedWork``: it records what it was asked and
answers as scripted; the real node work over SSH is exercised by the lab test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from kubernetes import client
from tests.k8s_api_double import KubeApiDouble, write_kubeconfig

from quietcore.k8s.cluster import Cluster, node_name
from quietcore.k8s.rollout import (
    DIGEST_LABEL,
    FAILURE_ANNOTATION,
    PROFILE_LABEL,
    NodeTarget,
    Rollout,
    RolloutOptions,
    WorkResult,
    label_value,
    plan_batches,
)
from quietcore.k8s.rollout_cli import rollout

SELECTOR = "pool=trading"
DIGEST = "ab" * 32
NODES = ("node-a", "node-b", "node-c")


@dataclass
class ScriptedWork:
    """Stands in for apply/verify over SSH; records each call with the double's state then."""

    double: KubeApiDouble
    fail_verify: set[str] = field(default_factory=set)
    restarted: bool = False
    calls: list[tuple[str, str, bool, int]] = field(default_factory=list)

    def _record(self, what: str, nodes: Sequence[NodeTarget]) -> None:
        for target in nodes:
            node = self.double.node(target.name)
            cordoned = bool(node["spec"].get("unschedulable"))
            pods = sum(1 for p in self.double.pods.values() if p["spec"]["nodeName"] == target.name)
            self.calls.append((what, target.name, cordoned, pods))

    def apply(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]:
        self._record("apply", nodes)
        return {t.name: WorkResult(True, "2 changes", restarted=self.restarted) for t in nodes}

    def verify(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]:
        self._record("verify", nodes)
        return {
            t.name: WorkResult(False, "sysctl/vm.swappiness: drift (60, want 10)")
            if t.name in self.fail_verify
            else WorkResult(True)
            for t in nodes
        }


@pytest.fixture
def double() -> KubeApiDouble:
    api = KubeApiDouble()
    for index, name in enumerate(NODES):
        api.add_node(name, {"pool": "trading"}, internal_ip=f"192.0.2.{index + 10}")
        api.add_pod("default", f"web-{name}", name, owner="ReplicaSet")
        api.add_pod("kube-system", f"proxy-{name}", name, owner="DaemonSet")
        api.add_pod("kube-system", f"etcd-{name}", name, mirror=True)
    api.add_node("other", {"pool": "batch"})
    return api


@pytest.fixture
def cluster(double: KubeApiDouble) -> Iterator[Cluster]:
    with double.serving() as api_client:
        yield Cluster(api_client)


def _targets(cluster: Cluster) -> list[NodeTarget]:
    names = [node_name(node) for node in cluster.list_nodes(SELECTOR)]
    return [NodeTarget(name, (name, {})) for name in names]


def _rollout(
    cluster: Cluster, work: ScriptedWork, eviction_timeout: float = 5, ready_timeout: float = 5
) -> Rollout:
    settings = RolloutOptions(
        "trading",
        DIGEST,
        eviction_timeout=eviction_timeout,
        ready_timeout=ready_timeout,
        poll_interval=0.01,
    )
    return Rollout(cluster, work, settings)


def test_batches_canary_first_then_max_unavailable() -> None:
    names = [f"n{i}" for i in range(6)]
    assert plan_batches(names, 2, 1) == [["n0"], ["n1", "n2"], ["n3", "n4"], ["n5"]]
    assert plan_batches(names, 3, 0) == [["n0", "n1", "n2"], ["n3", "n4", "n5"]]
    assert plan_batches([], 1, 1) == []
    with pytest.raises(ValueError, match="max-unavailable"):
        plan_batches(names, 0, 1)


def test_label_value_fits_kubernetes_limits() -> None:
    assert label_value(DIGEST) == DIGEST[:63]
    assert label_value("a" * 62 + "._x") == "a" * 62


def test_happy_path_three_nodes_one_at_a_time(double: KubeApiDouble, cluster: Cluster) -> None:
    work = ScriptedWork(double)
    report = _rollout(cluster, work).run(_targets(cluster))

    assert report.ok and not report.stopped
    assert report.batches == (("node-a",), ("node-b",), ("node-c",))
    # One node at a time: each applied while cordoned and drained of evictable pods (the
    # DaemonSet and mirror pods stay: 2 left), and verified before the next one starts.
    assert work.calls == [(step, name, True, 2) for name in NODES for step in ("apply", "verify")]
    for name in NODES:
        node = double.node(name)
        assert not node["spec"]["unschedulable"]
        assert node["metadata"]["labels"][PROFILE_LABEL] == "trading"
        assert node["metadata"]["labels"][DIGEST_LABEL] == DIGEST[:63]
        assert node["metadata"]["annotations"]["quietcore.io/profile-sha256"] == DIGEST
        assert FAILURE_ANNOTATION not in node["metadata"]["annotations"]
        assert f"default/web-{name}" not in double.pods
        assert f"kube-system/proxy-{name}" in double.pods
        assert f"kube-system/etcd-{name}" in double.pods
    evicted = [r.path for r in double.calls("POST", "/eviction")]
    assert evicted == [f"/api/v1/namespaces/default/pods/web-{name}/eviction" for name in NODES]
    assert double.node("other")["metadata"]["labels"] == {"pool": "batch"}
    # Never more than one node unschedulable at a time.
    patches = [r for r in double.calls("PATCH") if "unschedulable" in (r.body.get("spec") or {})]
    flips = [(r.path.rsplit("/", 1)[1], r.body["spec"]["unschedulable"]) for r in patches]
    assert flips == [(name, state) for name in NODES for state in (True, False)]


def test_pdb_refuses_then_allows(double: KubeApiDouble, cluster: Cluster) -> None:
    double.refusals["default/web-node-a"] = 3
    work = ScriptedWork(double)
    report = _rollout(cluster, work, eviction_timeout=30).run(_targets(cluster))

    assert report.ok
    attempts = double.calls("POST", "/pods/web-node-a/eviction")
    assert len(attempts) == 4  # three 429s, then the eviction
    assert work.calls[0] == ("apply", "node-a", True, 2)


def test_pdb_that_never_allows_stops_the_rollout(double: KubeApiDouble, cluster: Cluster) -> None:
    double.refusals["default/web-node-a"] = 10**6
    work = ScriptedWork(double)
    report = _rollout(cluster, work, eviction_timeout=0.3).run(_targets(cluster))

    assert report.stopped and not report.ok
    [failed] = report.failed
    assert (failed.node, failed.step) == ("node-a", "evict")
    assert "default/web-node-a" in failed.detail
    assert work.calls == []  # nothing applied on a node that could not be drained
    node = double.node("node-a")
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"][FAILURE_ANNOTATION].startswith("evict: ")
    assert not double.node("node-b")["spec"]


def test_node_never_ready_stops_cordoned_and_annotated(
    double: KubeApiDouble, cluster: Cluster
) -> None:
    double.never_ready.add("node-a")
    work = ScriptedWork(double, restarted=True)
    report = _rollout(cluster, work, ready_timeout=0.3).run(_targets(cluster))

    assert report.stopped
    [failed] = report.failed
    assert (failed.node, failed.step) == ("node-a", "ready")
    assert "KubeletNotReady" in failed.detail
    node = double.node("node-a")
    assert node["spec"]["unschedulable"] is True
    assert node["metadata"]["annotations"][FAILURE_ANNOTATION].startswith("ready: not Ready")
    assert PROFILE_LABEL not in node["metadata"]["labels"]
    # The next batches never started: node-b and node-c untouched.
    assert [call[1] for call in work.calls] == ["node-a"]
    assert [o.status for o in report.outcomes] == ["failed", "not-started", "not-started"]
    for name in ("node-b", "node-c"):
        assert double.node(name)["spec"] == {}
        assert f"default/web-{name}" in double.pods


def test_verify_failure_stops_and_marks_the_node(double: KubeApiDouble, cluster: Cluster) -> None:
    work = ScriptedWork(double, fail_verify={"node-b"})
    report = _rollout(cluster, work).run(_targets(cluster))

    assert report.stopped
    assert [(o.node, o.status) for o in report.outcomes] == [
        ("node-a", "done"),
        ("node-b", "failed"),
        ("node-c", "not-started"),
    ]
    node_b = double.node("node-b")
    assert node_b["spec"]["unschedulable"] is True
    assert "drift" in node_b["metadata"]["annotations"][FAILURE_ANNOTATION]
    assert PROFILE_LABEL not in node_b["metadata"]["labels"]
    assert double.node("node-a")["metadata"]["labels"][PROFILE_LABEL] == "trading"
    assert double.node("node-c")["spec"] == {}


def test_node_work_that_raises_marks_the_node(double: KubeApiDouble, cluster: Cluster) -> None:
    class BrokenWork(ScriptedWork):
        def apply(self, nodes: Sequence[NodeTarget]) -> dict[str, WorkResult]:
            raise RuntimeError("ssh: connection reset")

    report = _rollout(cluster, BrokenWork(double)).run(_targets(cluster))

    assert report.stopped
    [failed] = report.failed
    assert (failed.node, failed.step) == ("node-a", "apply")
    annotation = double.node("node-a")["metadata"]["annotations"][FAILURE_ANNOTATION]
    assert annotation == "apply: RuntimeError: ssh: connection reset"
    assert double.node("node-a")["spec"]["unschedulable"] is True


def test_failure_budget_lets_the_rollout_go_on(double: KubeApiDouble, cluster: Cluster) -> None:
    work = ScriptedWork(double, fail_verify={"node-a"})
    settings = RolloutOptions("trading", DIGEST, max_failures=1, poll_interval=0.01)
    report = Rollout(cluster, work, settings).run(_targets(cluster))

    assert not report.stopped
    assert [o.status for o in report.outcomes] == ["failed", "done", "done"]


def test_max_unavailable_two_cordons_a_batch_together(
    double: KubeApiDouble, cluster: Cluster
) -> None:
    work = ScriptedWork(double)
    settings = RolloutOptions("trading", DIGEST, max_unavailable=2, canary=1, poll_interval=0.01)
    report = Rollout(cluster, work, settings).run(_targets(cluster))

    assert report.batches == (("node-a",), ("node-b", "node-c"))
    assert report.ok
    # Both nodes of the second batch cordoned and drained when the work ran on them.
    assert ("apply", "node-b", True, 2) in work.calls
    assert ("apply", "node-c", True, 2) in work.calls


@pytest.fixture
def kubeconfig(double: KubeApiDouble, tmp_path: Path) -> Iterator[Path]:
    with double.serving() as api_client:
        yield write_kubeconfig(api_client, tmp_path / "kubeconfig")


def _cli(kubeconfig: Path, *args: str) -> Result:
    base = ["-l", SELECTOR, "-p", "network-latency", "--kubeconfig", str(kubeconfig)]
    return CliRunner().invoke(rollout, [*base, *args])


def test_cli_dry_run_prints_batches_and_changes_nothing(
    double: KubeApiDouble, kubeconfig: Path
) -> None:
    result = _cli(kubeconfig, "--dry-run", "--max-unavailable", "2", "--json")
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["batches"] == [["node-a"], ["node-b", "node-c"]]
    assert document["ssh"]["node-b"] == "192.0.2.11"
    assert double.calls("PATCH") == []
    assert double.calls("POST") == []


def test_cli_refuses_nodes_cordoned_by_someone_else(
    double: KubeApiDouble, kubeconfig: Path
) -> None:
    double.nodes["node-b"]["spec"]["unschedulable"] = True
    result = _cli(kubeconfig, "--dry-run")
    assert result.exit_code == 2
    assert "already cordoned by someone else: node-b" in result.output
    # A node left cordoned by a failed rollout (annotated) is taken up again.
    double.nodes["node-b"]["metadata"]["annotations"][FAILURE_ANNOTATION] = "verify: drift"
    assert _cli(kubeconfig, "--dry-run").exit_code == 0


def test_cli_unreachable_api_server(tmp_path: Path) -> None:
    api_client = client.ApiClient(client.Configuration(host="http://127.0.0.1:9"))
    result = _cli(write_kubeconfig(api_client, tmp_path / "kubeconfig"), "--dry-run")
    assert result.exit_code == 3
    assert "API server unreachable" in result.output
