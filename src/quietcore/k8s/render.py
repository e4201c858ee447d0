"""A node pool's files, rendered from ``k8s_manifests`` with a pool's values.

Pure: ``render_pool(values, verifier)`` returns ``{relative path: text}``. ``cluster/`` holds
the objects to ``kubectl apply`` (namespace, RuntimeClass, the verifier's ConfigMap and
DaemonSet); ``node/`` what goes onto each node (the kubelet drop-in apply writes too, the
pool's labels and a script that labels and taints nodes); ``examples/`` a Guaranteed pod.
"""

from __future__ import annotations

import hashlib

from quietcore.k8s.node_checks import checks_json
from quietcore.k8s.pool import Hugepages, PoolValues
from quietcore.k8s.templates import render
from quietcore.knobs.kubelet import DROP_IN as KUBELET_DROP_IN
from quietcore.knobs.kubelet import render_drop_in

NAMESPACE = "quietcore"
IMAGE = "python:3.12-slim"
PORT = 9464
DEFAULT_HANDLER = "runc"
VERIFIER_COMMAND = (
    "python3",
    "/opt/quietcore/qc_node_verifier.py",
    "--checks",
    "/opt/quietcore/checks.json",
    "--host-root",
    "/host",
    "--port",
    str(PORT),
)
DROP_IN_FILE = f"node/{KUBELET_DROP_IN.rpartition('/')[2]}"


def _example_hugepages(values: PoolValues) -> dict[str, str] | None:
    """One page of the largest size the profile allocates, as the pod asks for it."""
    if not values.hugepages:
        return None
    largest: Hugepages = max(values.hugepages, key=lambda pages: pages.size_kib)
    size = largest.resource.removeprefix("hugepages-")
    return {"resource": largest.resource, "quantity": size, "medium": f"HugePages-{size}"}


def _example_cpus(values: PoolValues) -> int:
    options = next((s.desired for s in values.kubelet if s.key.endswith("PolicyOptions")), "")
    # full-pcpus-only admits only whole cores: a multiple of the threads per core.
    return values.smt_width if "full-pcpus-only=true" in options.split(",") else 1


def render_pool(
    values: PoolValues, verifier: str, handler: str = DEFAULT_HANDLER
) -> dict[str, str]:
    """Every file of the pool; ``verifier`` is the node verifier's source."""
    checks = checks_json(values.settings, profile=values.profile, digest=values.digest)
    digest = hashlib.sha256(f"{checks}\0{verifier}".encode()).hexdigest()
    common = {
        "values": values,
        "namespace": NAMESPACE,
        "runtime_class": f"quietcore-{values.pool}",
        "verifier_name": f"quietcore-verifier-{values.pool}",
    }
    return {
        DROP_IN_FILE: render_drop_in(values.kubelet),
        "node/node-labels.yaml": render("node-labels.yaml.j2", **common),
        "node/label-nodes.sh": render("label-nodes.sh.j2", **common),
        "cluster/00-namespace.yaml": render("namespace.yaml.j2", **common),
        "cluster/10-runtimeclass.yaml": render("runtimeclass.yaml.j2", handler=handler, **common),
        "cluster/20-verifier-configmap.yaml": render(
            "verifier-configmap.yaml.j2", checks=checks, script=verifier, **common
        ),
        "cluster/21-verifier-daemonset.yaml": render(
            "verifier-daemonset.yaml.j2",
            image=IMAGE,
            port=PORT,
            command=VERIFIER_COMMAND,
            config_digest=f"sha256:{digest}",
            **common,
        ),
        "examples/guaranteed-pod.yaml": render(
            "guaranteed-pod.yaml.j2",
            pod_name=f"quietcore-{values.pool}-guaranteed-example",
            cpus=_example_cpus(values),
            hugepages=_example_hugepages(values),
            **common,
        ),
    }


def as_stream(files: dict[str, str]) -> str:
    """The files as one multi-document YAML stream, each headed by its path (the shell
    script is left out: it is not YAML)."""
    documents = [f"# {path}\n{text}" for path, text in files.items() if not path.endswith(".sh")]
    return "---\n".join(documents)
