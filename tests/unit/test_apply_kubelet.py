"""Converging the kubelet family: a KubeletConfiguration drop-in, read back as the kubelet
merges it.

Real captures of the Firecracker VM (see cmdline_kubelet_hosts): ``apply-vm-default`` has no
kubelet at all; ``apply-vm-kubelet-dropins`` has kubeadm's configuration file, a site drop-in,
quietcore's own rendered drop-in and a stand-in kubelet process run with --config-dir. Other
kubelet states are built from it explicitly.
"""

from __future__ import annotations

import pytest
import yaml
from tests.bundles import load_readings
from tests.unit.cmdline_kubelet_hosts import KUBEADM_CONFIG, rendered_drop_in
from tests.unit.knob_hosts import verdicts

from quietcore.knobs.base import Setting
from quietcore.knobs.kubelet import (
    DROP_IN,
    NO_KUBELET,
    STATE_COMMAND,
    KubeletKnob,
    merge_patch,
)
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import resolve
from quietcore.readings import CommandResult, Readings
from quietcore.steps import UnsafeStepError
from quietcore.topology import Topology, parse_topology

KNOB = KubeletKnob()
DEFAULT = load_readings("apply-vm-default")
DROP_INS = load_readings("apply-vm-kubelet-dropins")
VM = parse_topology(DEFAULT)
SITE = "/etc/kubernetes/kubelet.conf.d/10-site.conf"


def _settings(topology: Topology = VM) -> list[Setting]:
    return [s for s in resolve(load_profile("trading"), topology) if s.family == KNOB.name]


def _state(readings: Readings, *lines: str) -> Readings:
    return Readings(readings.files, {**readings.commands, STATE_COMMAND: CommandResult(lines, 0)})


def _without(readings: Readings, *paths: str) -> Readings:
    files = {path: lines for path, lines in readings.files.items() if path not in paths}
    return Readings(files, readings.commands)


def test_a_host_without_kubelet_is_not_a_kubernetes_node() -> None:
    seen = verdicts(_settings(), DEFAULT, VM)
    assert set(seen.values()) == {("unsupported", None)}
    assert {KNOB.observe(s, DEFAULT, VM).reason for s in _settings()} == {NO_KUBELET}
    assert NO_KUBELET == "not a Kubernetes node: no kubelet"
    # A kubelet program without its configuration file stays missing.
    installed = _state(DEFAULT, "installed=/usr/bin/kubelet")
    assert set(verdicts(_settings(), installed, VM).values()) == {("missing", None)}


def test_drop_ins_merge_in_lexical_order_over_the_configuration_file() -> None:
    assert verdicts(_settings(), DROP_INS, VM) == {
        "kubelet/config": ("ok", KUBEADM_CONFIG),
        "kubelet/cpuManagerPolicy": ("ok", "static"),
        "kubelet/cpuManagerPolicyOptions": ("ok", "full-pcpus-only=true"),
        # best-effort in the file, restricted in 10-site.conf, quietcore's 90- wins.
        "kubelet/topologyManagerPolicy": ("ok", "single-numa-node"),
        "kubelet/topologyManagerScope": ("ok", "pod"),
        "kubelet/memoryManagerPolicy": ("ok", "Static"),
        "kubelet/reservedSystemCPUs": ("ok", "0"),
        # A map merges key by key: 10-site.conf's cpu stays beside quietcore's memory.
        "kubelet/systemReserved": ("drift", "cpu=250m,memory=500Mi"),
        "kubelet/kubeReserved": ("ok", "memory=500Mi"),
        # 500Mi + 500Mi + the default 100Mi eviction threshold, on the one NUMA node.
        "kubelet/reservedMemory": ("ok", "0:memory=1100Mi"),
    }
    by_key = {s.key: s for s in _settings()}
    reason = KNOB.observe(by_key["kubelet/systemReserved"], DROP_INS, VM).reason
    assert reason == f"merged from {KUBEADM_CONFIG}, {SITE}, {DROP_IN}"
    reason = KNOB.observe(by_key["kubelet/topologyManagerPolicy"], DROP_INS, VM).reason
    assert reason == f"set in {DROP_IN}"


def test_a_kubelet_without_config_dir_ignores_the_drop_ins() -> None:
    running = _state(DROP_INS, "installed=/usr/bin/kubelet", "running=yes")
    seen = verdicts(_settings(), running, VM)
    assert seen["kubelet/topologyManagerPolicy"] == ("drift", "best-effort")
    setting = next(s for s in _settings() if s.key == "kubelet/topologyManagerPolicy")
    assert KNOB.observe(setting, running, VM).reason == (
        f"set in {KUBEADM_CONFIG}; the running kubelet has no --config-dir: "
        "/etc/kubernetes/kubelet.conf.d is ignored"
    )
    elsewhere = _state(DROP_INS, "running=yes", "arg=--config-dir=/etc/kubelet.d/")
    reason = KNOB.observe(setting, elsewhere, VM).reason
    assert "reads drop-ins from /etc/kubelet.d, not /etc/kubernetes/kubelet.conf.d" in reason
    stopped = _state(DROP_INS, "installed=/usr/bin/kubelet")
    assert verdicts(_settings(), stopped, VM) == verdicts(_settings(), DROP_INS, VM)


def test_a_policy_change_says_the_state_file_must_go() -> None:
    running = _state(DROP_INS, "running=yes")  # drop-ins ignored: the file's values count
    setting = next(s for s in _settings() if s.key == "kubelet/memoryManagerPolicy")
    seen = KNOB.observe(setting, running, VM)
    assert seen.actual == "None"
    assert "/var/lib/kubelet/memory_manager_state removed" in seen.reason


def test_the_captured_drop_in_is_what_quietcore_renders_again() -> None:
    # Rendered, written on the VM, read back through the bundle: byte for byte the same.
    [file] = KNOB.native_files(_settings(), DROP_INS, VM)
    assert (file.path, file.activate, file.reboot) == (DROP_IN, (), True)
    assert KNOB.managed_paths == (DROP_IN,)
    captured = DROP_INS.lines(DROP_IN)
    assert captured is not None
    assert file.content == "\n".join(captured) + "\n"
    assert file.content == rendered_drop_in(DEFAULT)
    assert KNOB.native_files(list(reversed(_settings())), DEFAULT, VM) == (file,)


def test_the_drop_in_is_a_kubelet_configuration_of_strings() -> None:
    [file] = KNOB.native_files(_settings(), DEFAULT, VM)
    assert yaml.safe_load(file.content) == {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "cpuManagerPolicy": "static",
        "cpuManagerPolicyOptions": {"full-pcpus-only": "true"},  # a string, not YAML true
        "topologyManagerPolicy": "single-numa-node",
        "topologyManagerScope": "pod",
        "memoryManagerPolicy": "Static",
        "reservedSystemCPUs": "0",  # a string, not the number 0
        "systemReserved": {"memory": "500Mi"},
        "kubeReserved": {"memory": "500Mi"},
        "reservedMemory": [{"numaNode": 0, "limits": {"memory": "1100Mi"}}],
    }
    assert "cpu_manager_state" in file.content


def test_rollback_removes_the_file_and_nothing_runs() -> None:
    for setting in _settings():
        actual = KNOB.observe(setting, DROP_INS, VM).actual
        assert KNOB.steps_to_set(setting.key, actual, DROP_INS, VM) == ()
    rolled_back = _without(DROP_INS, DROP_IN)
    seen = verdicts(_settings(), rolled_back, VM)
    assert seen["kubelet/topologyManagerPolicy"] == ("drift", "restricted")  # 10-site.conf's
    assert seen["kubelet/cpuManagerPolicy"] == ("ok", "static")  # the file's own
    # Only the configuration-file check was declared: nothing to render.
    config_only = [s for s in _settings() if s.key == "kubelet/config"]
    assert KNOB.native_files(config_only, DROP_INS, VM) == ()


def test_merge_patch_follows_rfc_7386() -> None:
    target = {"a": 1, "m": {"x": "1", "y": "2"}, "l": [1, 2]}
    patch = {"m": {"y": None, "z": "3"}, "l": [3], "b": {"c": None}}
    assert merge_patch(target, patch) == {"a": 1, "m": {"x": "1", "z": "3"}, "l": [3], "b": {}}


def test_a_broken_drop_in_is_reported() -> None:
    lines = ("kind: KubeletConfiguration", "cpuManagerPolicy: [static")
    broken = Readings({**DROP_INS.files, SITE: lines}, DROP_INS.commands)
    setting = next(s for s in _settings() if s.key == "kubelet/cpuManagerPolicy")
    seen = KNOB.observe(setting, broken, VM)
    assert seen.actual is None
    assert seen.reason.startswith(f"drop-in {SITE} is not YAML")


@pytest.mark.parametrize(
    ("key", "value"),
    [("kubelet/systemReserved", "memory"), ("kubelet/reservedSystemCPUs", "0;reboot")],
)
def test_values_that_do_not_fit_the_field_are_refused(key: str, value: str) -> None:
    setting = Setting(key, "kubelet", value, "containers.kubelet.x")
    with pytest.raises(UnsafeStepError):
        KNOB.native_files([setting], DROP_INS, VM)


def test_text_cannot_add_yaml_fields() -> None:
    # Strings are JSON-quoted: a newline or a quote stays inside the value.
    value = 'static"\nkubeReserved: {cpu: "8"}'
    setting = Setting("kubelet/cpuManagerPolicy", "kubelet", value, "f", "x.yaml\nkind: x")
    [file] = KNOB.native_files([setting], DROP_INS, VM)
    document = yaml.safe_load(file.content)
    assert document["cpuManagerPolicy"] == value
    assert set(document) == {"apiVersion", "kind", "cpuManagerPolicy"}
