"""Kernel-bypass readiness on the real lab captures (``tests/data/bypass/README.md``): the
topology's PCI devices and IOMMU, the kernel arguments, the derived hugepage pools, and the
iommu, vfio and bypass families, untuned (as booted) and bypass-ready (after a reboot with the
bypass arguments and the NIC bound to vfio-pci). Other layouts are the captures with one fact
changed, in the formats the captures show.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from tests.conftest import run_cli
from tests.unit.bypass_hosts import DEVICE, PROFILE, READY, UNTUNED, host, loaded
from tests.unit.knob_hosts import verdicts

from quietcore.converge.plan import plan_apply
from quietcore.converge.shell import PRELUDE, step_line
from quietcore.knobs.base import Setting
from quietcore.knobs.bypass import BypassKnob
from quietcore.knobs.cmdline import GRUB_DROP_IN, CmdlineKnob
from quietcore.knobs.hugepages import hugetlbfs_mounts
from quietcore.knobs.iommu import IommuKnob
from quietcore.knobs.node_check import Unchecked
from quietcore.knobs.vfio import MODULES_LOAD, VfioKnob
from quietcore.profile.errors import ProfileError, ResolveError
from quietcore.profile.load import load_profile
from quietcore.profile.resolve import refuse, resolve
from quietcore.readings import HostRead, Readings
from quietcore.steps import BindDriver, Run, UnsafeStepError
from quietcore.topology import Topology, parse_topology

BYPASS_KEYS = (
    "cmdline/iommu",
    "cmdline/intel_iommu",
    "cmdline/hugepagesz",
    "cmdline/hugepages",
    "cmdline/default_hugepagesz",
    "hugepages/node1/1048576kB",
    "hugepages/default_size",
    "iommu/enabled",
    "iommu/passthrough",
    "vfio/module",
    f"vfio/device/{DEVICE}",
    "bypass/hugetlbfs",
    "bypass/free/node1/1048576kB",
    f"bypass/numa/{DEVICE}",
)


def _settings(topology: Topology) -> list[Setting]:
    return resolve(loaded(), topology)


def _bypass_verdicts(name: str) -> dict[str, tuple[str, str | None]]:
    readings, topology = host(name)
    found = verdicts(_settings(topology), readings, topology)
    return {key: found[key] for key in BYPASS_KEYS}


def _profile_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "bypass.yaml"
    base = Path(__file__).resolve().parents[1] / "data" / "bypass" / "lab-bypass.yaml"
    path.write_text(f"name: t\nextends: {base}\n{text}")
    return path


# --- Topology facts ---------------------------------------------------------------------------


def test_pci_devices_iommu_and_routes_of_the_lab() -> None:
    _, topology = host(UNTUNED)
    nic = topology.pci_devices[DEVICE]
    assert (nic.numa_node, nic.driver, nic.interfaces) == (1, "virtio-pci", ("enp129s0",))
    management = topology.pci_devices["0000:00:02.0"]
    assert (management.numa_node, management.interfaces) == (None, ("enp0s2",))
    assert topology.pci_devices["0000:00:00.0"].driver is None
    assert topology.iommu_units == ("dmar0",) and topology.iommu_tables == ("DMAR",)
    # The lab's CPU says AuthenticAMD (qemu -cpu max) but its IOMMU is a VT-d: units first.
    assert topology.cpu_vendor == "AuthenticAMD"
    assert topology.iommu_vendor == "intel" and topology.has_iommu
    # The lab has no default route; its management NIC is the one with IPv4 routes.
    assert topology.routed_interfaces == {"enp0s2"}


def test_iommu_vendor_falls_back_to_the_table_then_the_cpu() -> None:
    _, topology = host(UNTUNED)
    no_unit = dataclasses.replace(topology, iommu_units=())
    assert no_unit.iommu_vendor == "intel" and no_unit.has_iommu
    bare = dataclasses.replace(no_unit, iommu_tables=())
    assert bare.iommu_vendor == "amd" and not bare.has_iommu
    intel = dataclasses.replace(bare, cpu_vendor="GenuineIntel")
    assert intel.iommu_vendor == "intel"
    assert dataclasses.replace(bare, cpu_vendor="HygonGenuine").iommu_vendor is None


def test_the_bypass_nic_is_gone_from_the_kernel_once_bound() -> None:
    _, topology = host(READY)
    nic = topology.pci_devices[DEVICE]
    assert (nic.numa_node, nic.driver, nic.interfaces) == (1, "vfio-pci", ())
    assert "enp129s0" not in topology.interfaces


# --- What the profile asks for on the lab -----------------------------------------------------


def test_kernel_arguments_pools_and_checks_resolved_on_the_lab() -> None:
    _, topology = host(UNTUNED)
    settings = {setting.key: setting for setting in _settings(topology)}
    assert {key: settings[key].desired for key in BYPASS_KEYS[:5]} == {
        "cmdline/iommu": "iommu=pt",
        "cmdline/intel_iommu": "intel_iommu=on",
        "cmdline/hugepagesz": "hugepagesz=1G",
        "cmdline/hugepages": "hugepages=1:1",
        "cmdline/default_hugepagesz": "default_hugepagesz=1G",
    }
    pool = settings["hugepages/node1/1048576kB"]
    assert (pool.desired, pool.field, pool.reboot_required) == (
        "1",
        "bypass.hugepages.per_node",
        True,
    )
    # Only node 1 is local to the NIC: no pool on node 0.
    assert "hugepages/node0/1048576kB" not in settings
    assert settings[f"vfio/device/{DEVICE}"].field == "bypass.devices.0"
    assert settings[f"vfio/device/{DEVICE}"].source is not None
    # cpu-partitioning reserves the first CPU of each node: poll CPUs 1 and 3.
    assert settings[f"bypass/numa/{DEVICE}"].desired == "1,3"
    assert all(settings[key].effect for key in ("iommu/passthrough", "bypass/hugetlbfs"))


def test_the_untuned_lab_drifts_where_bypass_is_not_ready() -> None:
    assert _bypass_verdicts(UNTUNED) == {
        "cmdline/iommu": ("drift", None),
        "cmdline/intel_iommu": ("drift", None),
        "cmdline/hugepagesz": ("drift", None),
        "cmdline/hugepages": ("drift", None),
        "cmdline/default_hugepagesz": ("drift", None),
        "hugepages/node1/1048576kB": ("drift", "0"),
        "hugepages/default_size": ("drift", "2M"),
        # Debian's kernel turns the IOMMU on by itself, translating (DMA-FQ).
        "iommu/enabled": ("ok", "yes"),
        "iommu/passthrough": ("drift", "DMA-FQ"),
        "vfio/module": ("drift", "not loaded"),
        f"vfio/device/{DEVICE}": ("drift", "virtio-pci"),
        "bypass/hugetlbfs": ("drift", "2M"),
        "bypass/free/node1/1048576kB": ("drift", "0"),
        f"bypass/numa/{DEVICE}": ("ok", "2-3"),  # node 1's CPUs: poll CPU 3 is there
    }


def test_the_ready_lab_verifies_without_drift() -> None:
    found = _bypass_verdicts(READY)
    assert {key: status for key, (status, _) in found.items()} == dict.fromkeys(BYPASS_KEYS, "ok")
    assert found["iommu/passthrough"] == ("ok", "identity")
    assert found[f"vfio/device/{DEVICE}"] == ("ok", "vfio-pci")
    assert found["bypass/hugetlbfs"] == ("ok", "1G")
    assert found["bypass/free/node1/1048576kB"] == ("ok", "1")


def test_a_host_without_iommu_hardware_is_unsupported_not_drift() -> None:
    readings, topology = host(UNTUNED)
    bare = dataclasses.replace(topology, iommu_units=(), iommu_tables=())
    settings = [s for s in _settings(topology) if s.family == "iommu"]
    found = verdicts(settings, readings, bare)
    assert found == {
        "iommu/enabled": ("unsupported", None),
        "iommu/passthrough": ("unsupported", None),
    }
    reason = IommuKnob().observe(settings[0], readings, bare).reason
    assert "no IOMMU on this host" in reason


def test_a_hugetlbfs_mount_shows_its_page_size() -> None:
    readings, _ = host(READY)
    assert hugetlbfs_mounts(readings.lines("/proc/mounts") or (), None) == {
        1048576: ["/dev/hugepages"]
    }
    untuned, _ = host(UNTUNED)
    assert hugetlbfs_mounts(untuned.lines("/proc/mounts") or (), None) == {2048: ["/dev/hugepages"]}
    # Without pagesize= a mount has the default size.
    line = "hugetlbfs /mnt/huge hugetlbfs rw,relatime 0 0"
    assert hugetlbfs_mounts([line], 2048) == {2048: ["/mnt/huge"]}


# --- Locality ---------------------------------------------------------------------------------


def _moved(topology: Topology, node: int | None) -> Topology:
    devices = dict(topology.pci_devices)
    devices[DEVICE] = dataclasses.replace(devices[DEVICE], numa_node=node)
    return dataclasses.replace(topology, pci_devices=devices)


def test_a_nic_away_from_the_poll_cpus_drifts_naming_both_nodes(tmp_path: Path) -> None:
    readings, topology = host(UNTUNED)
    path = _profile_file(tmp_path, 'bypass:\n  poll_cpus: "3"\n')
    settings = resolve(load_profile(str(path)), topology)
    [locality] = [s for s in settings if s.key == f"bypass/numa/{DEVICE}"]
    assert BypassKnob().matches(locality, "2-3")
    seen = BypassKnob().observe(locality, readings, _moved(topology, 0))
    assert seen.actual == "0-1" and not BypassKnob().matches(locality, "0-1")
    assert "on NUMA node 0" in seen.reason and "poll CPUs 3 are on node 1" in seen.reason


def test_a_nic_of_unknown_node_drifts_on_a_multi_node_host() -> None:
    readings, topology = host(UNTUNED)
    unknown = _moved(topology, None)
    [locality] = [s for s in _settings(unknown) if s.key == f"bypass/numa/{DEVICE}"]
    seen = BypassKnob().observe(locality, readings, unknown)
    assert (seen.actual, seen.status) == ("unknown", "drift")
    assert "NUMA node -1" in seen.reason
    # Its hugepages then go to every node of the poll CPUs (1 and 3: nodes 0 and 1).
    pools = [s.key for s in _settings(unknown) if s.key.startswith("hugepages/node")]
    assert pools == ["hugepages/node0/1048576kB", "hugepages/node1/1048576kB"]
    hugepages = [s.desired for s in _settings(unknown) if s.key == "cmdline/hugepages"]
    assert hugepages == ["hugepages=0:1,1:1"]


# --- Refused input: file, line and field, nothing changed --------------------------------------


def _refused(path: Path, topology: Topology) -> str:
    profile = load_profile(str(path))
    with pytest.raises(ResolveError) as caught:
        resolve(profile, topology)
    [problem] = refuse(profile, caught.value).problems
    assert problem.file.endswith("bypass.yaml") and problem.line is not None
    return f"{problem.field}: {problem.message}"


def test_a_device_the_host_lacks_is_refused_with_its_line(tmp_path: Path) -> None:
    _, topology = host(UNTUNED)
    path = _profile_file(tmp_path, 'bypass:\n  devices: ["0000:82:00.0"]\n')
    assert _refused(path, topology).startswith("bypass.devices.0: this host has no PCI device")


def test_the_management_nic_is_refused(tmp_path: Path) -> None:
    _, topology = host(UNTUNED)
    path = _profile_file(tmp_path, 'bypass:\n  devices: ["0000:00:02.0"]\n')
    message = _refused(path, topology)
    assert message.startswith("bypass.devices.0: 0000:00:02.0 carries enp0s2")
    assert "cut the host off" in message


def test_a_bad_pci_address_is_refused_by_the_schema(tmp_path: Path) -> None:
    path = _profile_file(tmp_path, 'bypass:\n  devices: ["81:00.0"]\n')
    with pytest.raises(ProfileError) as caught:
        load_profile(str(path))
    [problem] = caught.value.problems
    assert (problem.field, problem.line) == ("bypass.devices.0", 4)
    assert "not a PCI address" in problem.message


def test_a_pool_declared_twice_is_refused_naming_the_field(tmp_path: Path) -> None:
    _, topology = host(UNTUNED)
    path = _profile_file(tmp_path, "hugepages:\n  pages: [{size: 1G, node: 1, count: 1}]\n")
    assert _refused(path, topology).startswith("hugepages.pages.0: 1G pages for node 1")


def test_boot_pools_of_two_sizes_are_refused(tmp_path: Path) -> None:
    _, topology = host(UNTUNED)
    path = _profile_file(
        tmp_path, "hugepages:\n  pages: [{size: 2M, node: 0, count: 8, boot: true}]\n"
    )
    message = _refused(path, topology)
    assert message.startswith("bypass.hugepages: boot-time pools use one page size")


def test_an_explicit_boot_pool_is_reboot_time_and_on_the_command_line(tmp_path: Path) -> None:
    _, topology = host(UNTUNED)
    path = _profile_file(
        tmp_path,
        "bypass: {hugepages: null}\nhugepages:\n  pages: [{size: 1G, count: 2, boot: true}]\n",
    )
    settings = {s.key: s for s in resolve(load_profile(str(path)), topology)}
    assert settings["hugepages/1048576kB"].reboot_required
    assert settings["cmdline/hugepages"].desired == "hugepages=2"
    assert settings["cmdline/hugepages"].field == "hugepages.pages.0.count"


# --- Converging -------------------------------------------------------------------------------


def test_binding_steps_apply_and_rollback() -> None:
    readings, topology = host(UNTUNED)
    knob, key = VfioKnob(), f"vfio/device/{DEVICE}"
    assert knob.steps_to_set(key, "vfio-pci", readings, topology) == (
        BindDriver(DEVICE, "vfio-pci", override=True),
    )
    ready, bound = host(READY)
    assert knob.steps_to_set(key, "virtio-pci", ready, bound) == (BindDriver(DEVICE, "virtio-pci"),)
    assert knob.steps_to_set(key, "none", ready, bound) == (BindDriver(DEVICE, None),)
    assert knob.steps_to_set("vfio/module", "loaded", readings, topology) == (
        Run(("modprobe", "vfio-pci")),
    )
    assert knob.steps_to_set("vfio/module", "not loaded", readings, topology) == (
        Run(("modprobe", "-r", "vfio-pci")),
    )
    assert knob.restore_rank(key) < knob.restore_rank("vfio/module")


def test_steps_never_take_the_management_nic() -> None:
    readings, topology = host(UNTUNED)
    with pytest.raises(UnsafeStepError, match="cut the host off"):
        VfioKnob().steps_to_set("vfio/device/0000:00:02.0", "vfio-pci", readings, topology)
    with pytest.raises(UnsafeStepError):
        BindDriver("0000:81:00.0; reboot", "vfio-pci")
    with pytest.raises(UnsafeStepError):
        BindDriver(DEVICE, "vfio pci")
    with pytest.raises(UnsafeStepError):
        BindDriver(DEVICE, None, override=True)


def test_the_bind_step_renders_one_checked_shell_call() -> None:
    assert step_line(BindDriver(DEVICE, "vfio-pci", override=True)) == (
        f"qc_bind {DEVICE} vfio-pci 1"
    )
    assert step_line(BindDriver(DEVICE, None)) == f"qc_bind {DEVICE} '' 0"
    assert "qc_bind() {" in PRELUDE


def test_plan_binds_the_nic_now_and_writes_the_boot_files() -> None:
    readings, _ = host(UNTUNED)
    plan = plan_apply(loaded(), HostRead("lab", readings, None, 0.0), "2026-11-24T00:00:00Z")
    assert plan.error is None
    changes = {change.key: change for change in plan.changes}
    bind = changes[f"vfio/device/{DEVICE}"]
    assert (bind.kind, bind.before, bind.after) == ("now", "virtio-pci", "vfio-pci")
    assert bind.steps == (BindDriver(DEVICE, "vfio-pci", override=True),)
    assert changes["cmdline/iommu"].kind == "at-boot" and plan.needs_reboot
    assert changes["iommu/passthrough"].kind == "effect"
    files = {file.path: file.file for file in plan.files if file.file is not None}
    assert files[MODULES_LOAD].content.endswith("vfio-pci\n")
    grub = files[GRUB_DROP_IN].content.splitlines()[-1]
    # hugepages= counts pages of the hugepagesz= before it.
    assert "default_hugepagesz=1G hugepagesz=1G hugepages=1:1 intel_iommu=on" in grub
    assert grub.index("hugepagesz=1G") < grub.index("hugepages=1:1")
    boot = files["/etc/quietcore/boot.sh"].content
    assert f"qc_bind {DEVICE} vfio-pci 1" in boot


def test_node_checks_for_every_bypass_key() -> None:
    _, topology = host(UNTUNED)
    settings = {s.key: s for s in _settings(topology)}
    vfio = VfioKnob().node_check(settings[f"vfio/device/{DEVICE}"])
    assert vfio.path == f"/sys/bus/pci/drivers/vfio-pci/{DEVICE}" and vfio.kind == "exists"
    iommu = IommuKnob().node_check(settings["iommu/passthrough"])
    assert (iommu.kind, iommu.desired) == ("all_equal", "identity")
    unchecked = BypassKnob().node_check(settings["bypass/hugetlbfs"])
    assert isinstance(unchecked, Unchecked) and "over SSH" in unchecked.reason
    assert CmdlineKnob().node_check(settings["cmdline/hugepages"]).kind == "cmdline_arg"


def test_no_bypass_section_reads_and_resolves_nothing() -> None:
    readings, topology = host(UNTUNED)
    plain = load_profile("network-latency")
    keys = {s.key for s in resolve(plain, topology)}
    assert not {key for key in keys if key.startswith(("iommu/", "vfio/", "bypass/"))}
    for knob in (IommuKnob(), VfioKnob(), BypassKnob()):
        assert knob.reads(plain.profile).files == () and knob.reads(plain.profile).commands == ()
    assert isinstance(readings, Readings) and parse_topology(Readings()).pci_devices == {}


def test_plan_refuses_a_device_this_machine_lacks_with_file_and_line() -> None:
    # This machine has no PCI device 0000:81:00.0 (the lab's bypass NIC): plan names the
    # profile file, line and field, plans nothing, and exits 2.
    _, topology = host(UNTUNED)
    here = run_cli("plan", "--profile", str(PROFILE), "@local")
    assert here.returncode == 2, here.stdout + here.stderr
    assert f"lab-bypass.yaml:5: bypass.devices.0: this host has no PCI device {DEVICE}" in (
        here.stdout + here.stderr
    )
    assert "0 changes" in here.stdout and DEVICE in topology.pci_devices
