"""A TEST DOUBLE of the Kubernetes API server, for the rollout tests. Not a Kubernetes.

No kube-apiserver, envtest or kwok can be installed here, so the real ``kubernetes`` client
talks HTTP to this small threaded server, which implements only what a rollout calls:

- ``GET /api/v1/nodes?labelSelector=`` (``k=v``, ``k==v``, ``k!=v``, ``k``, comma = and),
  ``GET /api/v1/nodes/NAME``, ``PATCH /api/v1/nodes/NAME`` (JSON merge patch only; any other
  content type is refused with 415, as a server would refuse a JSON patch given a map);
- ``GET /api/v1/pods?fieldSelector=spec.nodeName=NAME``;
- ``POST /api/v1/namespaces/NS/pods/NAME/eviction``: deletes the pod at once, or answers 429
  as the API server does when a PodDisruptionBudget forbids the eviction (scripted per pod).

What a kubelet would do is scripted too: a node reports Ready (heartbeat: now) unless it is
in ``never_ready``. Every request is recorded, so tests can check the order of calls.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from kubernetes import client

# The API server merges a node patch as the kubelet merges a drop-in: RFC 7386.
from quietcore.knobs.kubelet import merge_patch

MERGE_PATCH = "application/merge-patch+json"
_NODE = re.compile(r"^/api/v1/nodes/(?P<name>[^/]+)$")
_EVICTION = re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/eviction$")


def write_kubeconfig(api_client: client.ApiClient, path: Path) -> Path:
    """A kubeconfig pointing at the double, as a user's points at a cluster."""
    path.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: double\n"
        f"clusters: [{{name: double, cluster: {{server: '{api_client.configuration.host}'}}}}]\n"
        "users: [{name: u, user: {token: not-checked}}]\n"
        "contexts: [{name: double, context: {cluster: double, user: u}}]\n"
    )
    return path


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: Any


def _matches(labels: dict[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key) == value:
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key) != value:
                return False
        elif term not in labels:
            return False
    return True


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "reason": reason,
        "message": message,
        "code": code,
    }


@dataclass
class KubeApiDouble:
    nodes: dict[str, dict[str, Any]] = field(default_factory=dict)
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)  # "ns/name" -> pod
    refusals: dict[str, int] = field(default_factory=dict)  # "ns/name" -> 429s still to give
    never_ready: set[str] = field(default_factory=set)
    requests: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- scripting the cluster -------------------------------------------------------------

    def add_node(
        self,
        name: str,
        labels: dict[str, str],
        internal_ip: str = "192.0.2.10",
        annotations: dict[str, str] | None = None,
    ) -> None:
        self.nodes[name] = {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels), "annotations": annotations or {}},
            "spec": {},
            "status": {"addresses": [{"type": "InternalIP", "address": internal_ip}]},
        }

    def add_pod(
        self, namespace: str, name: str, node: str, owner: str | None = None, mirror: bool = False
    ) -> str:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace, "annotations": {}}
        if owner is not None:
            metadata["ownerReferences"] = [
                {"apiVersion": "apps/v1", "kind": owner, "name": f"{name}-owner", "uid": "u1"}
            ]
        if mirror:
            metadata["annotations"]["kubernetes.io/config.mirror"] = "hash"
        key = f"{namespace}/{name}"
        self.pods[key] = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": metadata,
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]},
            "status": {"phase": "Running"},
        }
        return key

    def node(self, name: str) -> dict[str, Any]:
        with self.lock:
            copy: dict[str, Any] = json.loads(json.dumps(self.nodes[name]))
            return copy

    def calls(self, method: str, pattern: str = "") -> list[Request]:
        with self.lock:
            return [r for r in self.requests if r.method == method and pattern in r.path]

    # --- answering ---------------------------------------------------------------------------

    def _node_view(self, name: str) -> dict[str, Any]:
        node: dict[str, Any] = json.loads(json.dumps(self.nodes[name]))
        ready = name not in self.never_ready
        node["status"]["conditions"] = [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "KubeletReady" if ready else "KubeletNotReady",
                "message": "kubelet is posting ready status" if ready else "PLEG is not healthy",
                "lastHeartbeatTime": _now(),
                "lastTransitionTime": _now(),
            }
        ]
        return node

    def handle(self, method: str, url: str, content_type: str, body: Any) -> tuple[int, Any]:
        parsed = urlparse(url)
        query = {key: values[0] for key, values in parse_qs(parsed.query).items()}
        path = parsed.path
        with self.lock:
            self.requests.append(Request(method, path, body))
            if method == "GET" and path == "/api/v1/nodes":
                selector = query.get("labelSelector", "")
                items = [
                    self._node_view(name)
                    for name, node in self.nodes.items()
                    if _matches(node["metadata"]["labels"], selector)
                ]
                return 200, {"kind": "NodeList", "apiVersion": "v1", "metadata": {}, "items": items}
            node_match = _NODE.match(path)
            if node_match:
                name = node_match["name"]
                if name not in self.nodes:
                    return 404, _status(404, "NotFound", f'nodes "{name}" not found')
                if method == "GET":
                    return 200, self._node_view(name)
                if method == "PATCH":
                    if content_type != MERGE_PATCH:
                        return 415, _status(415, "UnsupportedMediaType", content_type)
                    patched = merge_patch(self.nodes[name], body)
                    if not isinstance(patched, dict):
                        return 422, _status(422, "Invalid", "a node patch must be an object")
                    self.nodes[name] = patched
                    return 200, self._node_view(name)
            if method == "GET" and path == "/api/v1/pods":
                wanted = query.get("fieldSelector", "").removeprefix("spec.nodeName=")
                items = [p for p in self.pods.values() if p["spec"]["nodeName"] == wanted]
                return 200, {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": items}
            eviction = _EVICTION.match(path)
            if method == "POST" and eviction:
                return self._evict(f"{eviction['ns']}/{eviction['name']}", body)
        return 404, _status(404, "NotFound", f"the double does not implement {method} {path}")

    def _evict(self, key: str, body: Any) -> tuple[int, Any]:
        if key not in self.pods:
            return 404, _status(404, "NotFound", f'pods "{key}" not found')
        if self.refusals.get(key, 0) > 0:
            self.refusals[key] -= 1
            message = "Cannot evict pod as it would violate the pod's disruption budget."
            return 429, _status(429, "TooManyRequests", message)
        del self.pods[key]
        return 201, body

    # --- serving -----------------------------------------------------------------------------

    @contextmanager
    def serving(self) -> Iterator[client.ApiClient]:
        """Serve on a loopback port; yields a real kubernetes ApiClient pointed at it."""
        double = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                content_type = (self.headers.get("Content-Type") or "").split(";")[0]
                code, document = double.handle(self.command, self.path, content_type, body)
                data = json.dumps(document).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PATCH = do_POST = _answer  # noqa: N815

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        configuration = client.Configuration(host=f"http://127.0.0.1:{server.server_port}")
        api = client.ApiClient(configuration)
        try:
            yield api
        finally:
            api.close()  # type: ignore[no-untyped-call]
            server.shutdown()
            server.server_close()
            thread.join()
