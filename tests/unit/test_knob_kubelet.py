"""The kubelet family on real captures of the Firecracker VM (see platform_knob_hosts): as
booted it is not a Kubernetes node; tuned, a kubeadm-style /var/lib/kubelet/config.yaml with
part of the profile's manager settings was read through the bundle. Broken files are built
explicitly."""

from __future__ import annotations

from tests.bundles import load_readings
from tests.unit.knob_hosts import context, profile, synthetic_host, verdicts
from tests.unit.platform_knob_hosts import CAPTURE_PROFILE, capture_topology

from quietcore.knobs.base import Setting
from quietcore.knobs.kubelet import KubeletKnob
from quietcore.profile.schema import Profile
from quietcore.readings import Readings

KNOB = KubeletKnob()
VM = capture_topology("platform-vm-default")
CONFIG = "/var/lib/kubelet/config.yaml"


def _settings(declared: Profile = CAPTURE_PROFILE) -> list[Setting]:
    return list(KNOB.desired(context(declared, VM)))


def test_not_a_kubernetes_node() -> None:
    readings = load_readings("platform-vm-default")
    seen = verdicts(_settings(), readings, VM)
    assert set(seen.values()) == {("missing", None)}
    config = _settings()[0]
    assert KNOB.observe(config, readings, VM).reason == (
        f"no kubelet configuration at {CONFIG}: not a Kubernetes node?"
    )


def test_kubeadm_configuration_with_some_manager_settings() -> None:
    assert verdicts(_settings(), load_readings("platform-vm-tuned"), VM) == {
        "kubelet/config": ("ok", CONFIG),
        "kubelet/cpuManagerPolicy": ("ok", "static"),
        "kubelet/cpuManagerPolicyOptions": ("ok", "full-pcpus-only=true"),
        "kubelet/topologyManagerPolicy": ("drift", "best-effort"),
        "kubelet/topologyManagerScope": ("drift", "container"),  # unset: the kubelet default
        "kubelet/memoryManagerPolicy": ("drift", "None"),  # unset: the kubelet default
        "kubelet/reservedSystemCPUs": ("ok", "0"),
        "kubelet/systemReserved": ("ok", "cpu=500m,memory=512Mi"),
        "kubelet/kubeReserved": ("drift", "memory=256Mi"),
        "kubelet/reservedMemory": ("drift", ""),  # unset: the kubelet's default (none)
    }


def _file(*lines: str) -> Readings:
    return Readings({CONFIG: lines})


def test_a_file_that_is_not_a_kubelet_configuration() -> None:
    # Built explicitly: a kubeconfig at the configured path, and a file that is not YAML.
    declared = profile(containers={"kubelet": {"cpu_manager_policy": "static"}})
    kubeconfig = _file("apiVersion: v1", "kind: Config", "clusters: []")
    broken = _file("kind: KubeletConfiguration", "cpuManagerPolicy: [static")
    for readings in (kubeconfig, broken):
        assert verdicts(_settings(declared), readings, VM) == {
            "kubelet/config": ("drift", None),
            "kubelet/cpuManagerPolicy": ("missing", None),
        }
    config = _settings(declared)[0]
    assert (
        KNOB.observe(config, kubeconfig, VM).reason
        == f"{CONFIG}: not a KubeletConfiguration (kind: Config)"
    )


def test_yaml_types_and_bad_values() -> None:
    # Built explicitly: an unquoted boolean option (YAML true), a number in a map, and a CPU
    # list the kubelet would reject.
    readings = _file(
        "kind: KubeletConfiguration",
        "cpuManagerPolicyOptions: {full-pcpus-only: true}",
        "systemReserved: {pid: 1000, cpu: 1}",
        "reservedSystemCPUs: 0-x",
    )
    declared = profile(
        cpu={"reserved": "0"},
        containers={
            "kubelet": {
                "cpu_manager_policy_options": {"full-pcpus-only": "true"},
                "system_reserved": {"pid": "1000", "cpu": "1"},
                "reserved_system_cpus": "reserved",
            }
        },
    )
    seen = verdicts(_settings(declared), readings, VM)
    assert seen["kubelet/cpuManagerPolicyOptions"] == ("ok", "full-pcpus-only=true")
    assert seen["kubelet/systemReserved"] == ("ok", "cpu=1,pid=1000")
    assert seen["kubelet/reservedSystemCPUs"] == ("drift", "0-x")


def test_desired_only_declared_fields_with_the_config_path() -> None:
    host = synthetic_host()
    declared = profile(
        cpu={"reserved": "0,4", "isolated": "rest"},
        containers={
            "kubelet": {
                "config_path": "/etc/kubernetes/kubelet.yaml",
                "memory_manager_policy": "Static",
                "reserved_system_cpus": "reserved",
                "kube_reserved": {"memory": "1Gi", "cpu": "500m"},
            }
        },
    )
    settings = KNOB.desired(context(declared, host, reserved=frozenset({0, 4})))
    assert [(s.key, s.desired, s.field) for s in settings] == [
        ("kubelet/config", "/etc/kubernetes/kubelet.yaml", "containers.kubelet.config_path"),
        ("kubelet/memoryManagerPolicy", "Static", "containers.kubelet.memory_manager_policy"),
        ("kubelet/reservedSystemCPUs", "0,4", "containers.kubelet.reserved_system_cpus"),
        ("kubelet/kubeReserved", "cpu=500m,memory=1Gi", "containers.kubelet.kube_reserved"),
        # 1Gi + the default 100Mi eviction threshold, over the NUMA nodes of CPUs 0 and 4.
        (
            "kubelet/reservedMemory",
            "0:memory=562Mi;1:memory=562Mi",
            "containers.kubelet.memory_manager_policy",
        ),
    ]
    # The configuration file, then the drop-ins of the directory quietcore renders into.
    assert KNOB.reads(declared).files == (
        "/etc/kubernetes/kubelet.yaml",
        "/etc/kubernetes/kubelet.conf.d/*.conf",
    )
    only_path = profile(containers={"kubelet": {"config_path": "/etc/k.yaml"}})
    assert KNOB.reads(only_path).files == ()
    assert not list(KNOB.desired(context(only_path, host)))
