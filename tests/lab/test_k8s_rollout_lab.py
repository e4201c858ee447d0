"""A one-node rollout whose node is the lab VM: the Kubernetes side is the API server test
double (a lab has no kubelet), the SSH side is real: quietcore's plan/apply/verify over SSH
through ``quietcore k8s rollout``'s own node work.

Each test rolls the lab back afterwards, so the other lab tests find it as it was.

The lab has no kubelet, so the kubelet test installs a stand-in: a program named ``kubelet``
that only sleeps, run by a ``kubelet.service`` with ``--config-dir``, with a configuration file
and manager state files. That is what quietcore sees of a kubelet and what the rollout's
reset acts on (stop, remove the state files, start); whether a real kubelet then starts with
the new managers is for the opt-in real-cluster test.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner, Result

from quietcore.engine import inventory_for
from quietcore.k8s import node_work
from quietcore.k8s.inventory import ADDRESS_ANNOTATION
from quietcore.k8s.rollout import (
    DIGEST_LABEL,
    FAILURE_ANNOTATION,
    PROFILE_LABEL,
    NodeTarget,
    WorkResult,
)
from quietcore.k8s.rollout_cli import rollout
from quietcore.knobs.kubelet import DROP_IN, DROP_IN_DIR, STATE_FILES
from quietcore.profile.load import load_profile
from tests.conftest import run_cli
from tests.k8s_api_double import KubeApiDouble, write_kubeconfig
from tests.lab.conftest import Lab

pytestmark = pytest.mark.lab

NODE = "lab-node"
RUNTIME_PROFILE = """\
name: lab-rollout
summary: Runtime-only sysctls, so the rollout needs no reboot.
kernel:
  sysctl: {vm.swappiness: 7, vm.stat_interval: 9}
"""
# A kernel argument takes effect only at boot: with --reboot never, verify must find drift.
BOOT_PROFILE = """\
name: lab-rollout-boot
kernel:
  cmdline: [skew_tick=1]
"""
# Both managers: a policy change of either needs its state file gone. 100Mi (the default
# evictionHard memory.available) of reservedMemory on node 0 fits the lab's 1G per node.
KUBELET_PROFILE = """\
name: lab-rollout-kubelet
containers:
  kubelet:
    cpu_manager_policy: static
    reserved_system_cpus: "0"
    memory_manager_policy: Static
"""
KUBELET_PROGRAM = "/usr/local/bin/kubelet"
KUBELET_UNIT = "/etc/systemd/system/kubelet.service"
KUBELET_CONFIG = "/var/lib/kubelet/config.yaml"
# Not `exec sleep`: the process must stay the script, whose comm is `kubelet` and whose
# command line holds --config-dir, as quietcore's kubelet reading looks for them.
KUBELET_PATHS = f"{KUBELET_PROGRAM} {KUBELET_UNIT} /var/lib/kubelet /etc/kubernetes"
INSTALL_KUBELET = f"""\
set -e
printf '#!/bin/sh\\nwhile :; do sleep 3600; done\\n' > {KUBELET_PROGRAM}
chmod 755 {KUBELET_PROGRAM}
cat > {KUBELET_UNIT} <<'UNIT'
[Unit]
Description=Stand-in kubelet for quietcore's lab test (sleeps)
[Service]
ExecStart={KUBELET_PROGRAM} --config-dir {DROP_IN_DIR}
UNIT
mkdir -p /var/lib/kubelet
printf 'apiVersion: kubelet.config.k8s.io/v1beta1\\nkind: KubeletConfiguration\\n' \\
  > {KUBELET_CONFIG}
echo '{{"policyName":"none","defaultCpuSet":"0-3","checksum":1}}' \\
  > {STATE_FILES["cpuManagerPolicy"]}
echo '{{"policyName":"None","machineState":{{}},"checksum":1}}' \\
  > {STATE_FILES["memoryManagerPolicy"]}
systemctl daemon-reload
systemctl start kubelet.service
"""
REMOVE_KUBELET = f"""\
systemctl stop kubelet.service
rm -rf {KUBELET_PATHS}
systemctl daemon-reload
systemctl reset-failed kubelet.service 2>/dev/null
true
"""


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "controller-state"
    monkeypatch.setenv("QUIETCORE_STATE_DIR", str(directory))
    return directory


@pytest.fixture
def lab_ssh(lab_vm: Lab) -> dict[str, Any]:
    [host] = list(inventory_for([str(lab_vm.inventory)]))
    data: dict[str, Any] = host.data.dict()  # type: ignore[no-untyped-call]  # pyinfra's
    return data


@pytest.fixture
def double(lab_vm: Lab, lab_ssh: dict[str, Any], state_dir: Path) -> Iterator[KubeApiDouble]:
    api = KubeApiDouble()
    address = f"{lab_ssh['ssh_hostname']}:{lab_ssh['ssh_port']}"
    api.add_node(NODE, {"pool": "lab"}, annotations={ADDRESS_ANNOTATION: address})
    api.add_pod("default", "web", NODE, owner="ReplicaSet")
    api.add_pod("kube-system", "proxy", NODE, owner="DaemonSet")
    yield api
    rolled_back = run_cli("rollback", "--yes", str(lab_vm.inventory), timeout=600)
    assert rolled_back.returncode in (0, 1), rolled_back.stderr


@pytest.fixture
def kubelet_stand_in(lab_vm: Lab) -> Iterator[None]:
    """The stand-in kubelet, running. Asked for before ``double``, so it goes after the
    rollback: rollback reads the lab with the kubelet still as apply left it."""
    present = lab_vm.ssh(f'for p in {KUBELET_PATHS}; do [ ! -e "$p" ] || echo "$p"; done')
    assert present.strip() == "", f"the lab is not clean, not touching it: {present}"
    try:
        lab_vm.ssh(INSTALL_KUBELET)
        yield
    finally:
        lab_vm.ssh(REMOVE_KUBELET)


def _kubelet_unit(lab: Lab) -> dict[str, str]:
    shown = lab.ssh("systemctl show -p MainPID -p ActiveState kubelet.service")
    return {key: value for key, _, value in (line.partition("=") for line in shown.split())}


def _rollout(
    api: KubeApiDouble, lab_ssh: dict[str, Any], profile: Path, tmp_path: Path, *extra: str
) -> Result:
    with api.serving() as api_client:
        kubeconfig = write_kubeconfig(api_client, tmp_path / "kubeconfig")
        return CliRunner().invoke(
            rollout,
            [
                "-l",
                "pool=lab",
                "-p",
                str(profile),
                "--kubeconfig",
                str(kubeconfig),
                "--ssh-user",
                lab_ssh["ssh_user"],
                "--ssh-key",
                lab_ssh["ssh_key"],
                "--ssh-known-hosts",
                lab_ssh["ssh_known_hosts_file"],
                "--ready-timeout",
                "30",
                "--json",
                *extra,
            ],
        )


def test_one_node_rollout_applies_and_verifies_over_ssh(
    lab_vm: Lab, lab_ssh: dict[str, Any], double: KubeApiDouble, tmp_path: Path
) -> None:
    profile = tmp_path / "lab-rollout.yaml"
    profile.write_text(RUNTIME_PROFILE)

    result = _rollout(double, lab_ssh, profile, tmp_path)

    assert result.exit_code == 0, result.output
    [node] = json.loads(result.stdout)["nodes"]
    assert (node["status"], node["evicted"]) == ("done", ["default/web"])
    assert lab_vm.ssh("cat /proc/sys/vm/swappiness /proc/sys/vm/stat_interval").split() == [
        "7",
        "9",
    ]
    journal = lab_vm.ssh("cat /var/lib/quietcore/journal.jsonl")
    assert '"sysctl/vm.swappiness"' in journal
    seen = double.node(NODE)
    assert seen["spec"]["unschedulable"] is False
    assert seen["metadata"]["labels"][PROFILE_LABEL] == "lab-rollout"
    assert seen["metadata"]["labels"][DIGEST_LABEL] == load_profile(str(profile)).digest[:63]
    assert "kube-system/proxy" in double.pods


def test_drift_after_apply_fails_verify_and_leaves_node_cordoned(
    lab_vm: Lab, lab_ssh: dict[str, Any], double: KubeApiDouble, tmp_path: Path
) -> None:
    profile = tmp_path / "lab-rollout-boot.yaml"
    profile.write_text(BOOT_PROFILE)
    assert "skew_tick=1" not in lab_vm.ssh("cat /proc/cmdline")

    result = _rollout(double, lab_ssh, profile, tmp_path)

    assert result.exit_code == 4, result.output
    [node] = json.loads(result.stdout)["nodes"]
    assert (node["status"], node["step"]) == ("failed", "verify")
    assert "cmdline/skew_tick" in node["detail"]
    seen = double.node(NODE)
    assert seen["spec"]["unschedulable"] is True
    assert seen["metadata"]["annotations"][FAILURE_ANNOTATION].startswith("verify: drift")
    assert PROFILE_LABEL not in seen["metadata"]["labels"]


def _cordon_patches(api: KubeApiDouble) -> list[tuple[int, bool]]:
    """(position in the request log, unschedulable) of every cordon/uncordon patch."""
    return [
        (index, request.body["spec"]["unschedulable"])
        for index, request in enumerate(api.requests)
        if request.method == "PATCH" and "unschedulable" in (request.body or {}).get("spec", {})
    ]


def test_kubelet_reset_restarts_the_kubelet_on_the_drained_node(
    lab_vm: Lab,
    lab_ssh: dict[str, Any],
    kubelet_stand_in: None,
    double: KubeApiDouble,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    profile = tmp_path / "lab-rollout-kubelet.yaml"
    profile.write_text(KUBELET_PROFILE)
    before = _kubelet_unit(lab_vm)
    assert before["ActiveState"] == "active", before
    # The SSH work as the double saw it: the node's state and where the log stood.
    seen_by_work: list[tuple[int, bool, list[str]]] = []
    apply = node_work.SshNodeWork.apply

    def watched_apply(
        work: node_work.SshNodeWork, nodes: Sequence[NodeTarget]
    ) -> dict[str, WorkResult]:
        node = double.node(NODE)
        seen_by_work.append((len(double.requests), node["spec"]["unschedulable"], [*double.pods]))
        results = apply(work, nodes)
        seen_by_work.append((len(double.requests), double.node(NODE)["spec"]["unschedulable"], []))
        return results

    monkeypatch.setattr(node_work.SshNodeWork, "apply", watched_apply)

    result = _rollout(double, lab_ssh, profile, tmp_path, "--reboot", "never")

    assert result.exit_code == 0, result.output
    [node] = json.loads(result.stdout)["nodes"]
    assert node["status"] == "done", node
    drop_in = yaml.safe_load(lab_vm.ssh(f"cat {DROP_IN}"))
    assert drop_in["cpuManagerPolicy"] == "static"
    assert drop_in["memoryManagerPolicy"] == "Static"
    assert drop_in["reservedSystemCPUs"] == "0"
    state_files = " ".join(STATE_FILES.values())
    left = lab_vm.ssh(f'for f in {state_files}; do [ ! -e "$f" ] || echo "$f"; done')
    assert left.strip() == ""
    after = _kubelet_unit(lab_vm)
    assert after["ActiveState"] == "active", after
    assert after["MainPID"] not in ("0", before["MainPID"]), (before, after)
    # Applied once, as a drained node: cordoned, the ReplicaSet pod gone, the DaemonSet's left.
    [(start, cordoned, pods), (end, still_cordoned, _)] = seen_by_work
    assert (cordoned, still_cordoned, pods) == (True, True, ["kube-system/proxy"])
    patches = _cordon_patches(double)
    assert [state for _, state in patches] == [True, False]
    [(cordon_at, _), (uncordon_at, _)] = patches
    assert cordon_at < start <= end <= uncordon_at
    evictions = [i for i, r in enumerate(double.requests) if r.path.endswith("/eviction")]
    assert evictions and max(evictions) < start
    assert any(
        r.method == "GET" and r.path == f"/api/v1/nodes/{NODE}"
        for r in double.requests[end:uncordon_at]
    ), "no Ready check between the kubelet restart and the uncordon"
    labelled = double.node(NODE)
    assert labelled["spec"]["unschedulable"] is False
    assert labelled["metadata"]["labels"][PROFILE_LABEL] == "lab-rollout-kubelet"
