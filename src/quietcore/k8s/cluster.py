"""The few Kubernetes API calls a rollout needs, on the official client (CoreV1Api).

Nodes are changed with JSON merge patches (RFC 7386): the client would otherwise send a dict
body as a JSON patch, which the API server refuses. Evictions go through the Eviction API
(policy/v1), so the API server enforces PodDisruptionBudgets: a refusal is HTTP 429.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

log = logging.getLogger(__name__)

MERGE_PATCH = "application/merge-patch+json"
MIRROR_ANNOTATION = "kubernetes.io/config.mirror"
TOO_MANY_REQUESTS = 429
NOT_FOUND = 404

EvictionResult = Literal["evicted", "refused", "gone"]


class ClusterError(RuntimeError):
    """The API server refused or failed a call; the message names the call and the object."""


@dataclass(frozen=True)
class Readiness:
    ready: bool
    heartbeat: datetime | None  # when the kubelet last reported the condition
    reason: str


def from_kubeconfig(kubeconfig: str | None, context: str | None) -> Cluster:
    """A cluster from a kubeconfig file (default: $KUBECONFIG or ~/.kube/config)."""
    try:
        # The client's config loader has no annotations.
        api = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=kubeconfig, context=context
        )
    except (config.ConfigException, OSError) as problem:
        raise ClusterError(f"kubeconfig {kubeconfig or '(default)'}: {problem}") from problem
    return Cluster(api)


class Cluster:
    def __init__(self, api_client: client.ApiClient) -> None:
        self.core = client.CoreV1Api(api_client)

    def list_nodes(self, selector: str) -> list[client.V1Node]:
        nodes = self._call(f"list nodes {selector}", self.core.list_node, label_selector=selector)
        return sorted(nodes.items, key=node_name)

    def get_node(self, name: str) -> client.V1Node:
        node: client.V1Node = self._call(f"get node {name}", self.core.read_node, name)
        return node

    def set_unschedulable(self, name: str, unschedulable: bool) -> None:
        """Cordon (``True``) or uncordon (``False``) a node."""
        self._patch(name, {"spec": {"unschedulable": unschedulable}})

    def label(self, name: str, labels: Mapping[str, str]) -> None:
        self._patch(name, {"metadata": {"labels": dict(labels)}})

    def annotate(self, name: str, annotations: Mapping[str, str | None]) -> None:
        """Set annotations; ``None`` removes one."""
        self._patch(name, {"metadata": {"annotations": dict(annotations)}})

    def pods_on(self, node: str) -> list[client.V1Pod]:
        pods = self._call(
            f"list pods on {node}",
            self.core.list_pod_for_all_namespaces,
            field_selector=f"spec.nodeName={node}",
        )
        return list(pods.items)

    def evict(self, pod: client.V1Pod) -> EvictionResult:
        """Ask the API server to evict a pod; ``refused`` when a PodDisruptionBudget forbids
        it now (429), ``gone`` when the pod no longer exists."""
        namespace, name = pod_ref(pod)
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=namespace))
        try:
            self.core.create_namespaced_pod_eviction(name, namespace, body)
        except ApiException as problem:
            if problem.status == TOO_MANY_REQUESTS:
                log.info("eviction of %s/%s refused for now: %s", namespace, name, problem.reason)
                return "refused"
            if problem.status == NOT_FOUND:
                return "gone"
            raise ClusterError(f"evict pod {namespace}/{name}: {_why(problem)}") from problem
        return "evicted"

    def _patch(self, name: str, body: dict[str, Any]) -> None:
        self._call(
            f"patch node {name}", self.core.patch_node, name, body, _content_type=MERGE_PATCH
        )

    @staticmethod
    def _call(what: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(*args, **kwargs)
        except ApiException as problem:
            raise ClusterError(f"{what}: {_why(problem)}") from problem
        except (OSError, urllib3.exceptions.HTTPError) as problem:
            raise ClusterError(f"{what}: API server unreachable: {problem}") from problem


def _why(problem: ApiException) -> str:
    return f"HTTP {problem.status} {problem.reason}".strip()


def metadata(obj: client.V1Node | client.V1Pod) -> client.V1ObjectMeta:
    """An object's metadata; the API server always sends it with a name."""
    if obj.metadata is None or obj.metadata.name is None:
        raise ClusterError(f"the API server sent a {type(obj).__name__} without metadata.name")
    return obj.metadata


def node_name(node: client.V1Node) -> str:
    return str(metadata(node).name)


def pod_ref(pod: client.V1Pod) -> tuple[str, str]:
    """(namespace, name)"""
    meta = metadata(pod)
    return str(meta.namespace or "default"), str(meta.name)


def annotations_of(obj: client.V1Node | client.V1Pod) -> dict[str, str]:
    return dict(metadata(obj).annotations or {})


def readiness(node: client.V1Node) -> Readiness:
    """The node's Ready condition as the kubelet last reported it."""
    for condition in (node.status.conditions if node.status else None) or ():
        if condition.type == "Ready":
            reason = condition.reason or condition.message or f"Ready={condition.status}"
            return Readiness(condition.status == "True", condition.last_heartbeat_time, reason)
    return Readiness(False, None, "no Ready condition reported")


def is_unschedulable(node: client.V1Node) -> bool:
    return bool(node.spec and node.spec.unschedulable)


def to_evict(pod: client.V1Pod) -> bool:
    """What a drain evicts: not DaemonSet pods (their controller ignores cordons and would
    recreate them at once) and not mirror pods (static pods the kubelet owns)."""
    if MIRROR_ANNOTATION in annotations_of(pod):
        return False
    owners = metadata(pod).owner_references or ()
    return not any(owner.kind == "DaemonSet" for owner in owners)
