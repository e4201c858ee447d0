"""Captures shared by the tests of the irq, irqbalance, cpu, nic, systemd and kubelet families.

Every ``platform-vm-*`` capture is a real bundle output of the 2-CPU Firecracker VM these
families were written on, reading ``TOPOLOGY_READS`` and what ``CAPTURE_PROFILE`` needs from
these families (see ``tests/data/bundles/README.md``). Re-capture, as root on a VM without
irqbalance, with ``python -m tests.unit.platform_knob_hosts``: it changes the states listed
below, captures, and puts every value and file back (irqbalance is installed for two captures
and purged again; its daemon is stopped before it ends).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.bundles import BUNDLES, capture_local, load_readings

from quietcore.facts import merge_reads
from quietcore.knobs.cpu import CpuKnob
from quietcore.knobs.irq import IrqKnob
from quietcore.knobs.irqbalance import IrqbalanceKnob
from quietcore.knobs.kubelet import KubeletKnob
from quietcore.knobs.nic import NicKnob
from quietcore.knobs.systemd import SystemdKnob
from quietcore.profile.schema import Profile
from quietcore.topology import TOPOLOGY_READS, Topology, parse_topology

FAMILIES = (IrqKnob(), IrqbalanceKnob(), CpuKnob(), NicKnob(), SystemdKnob(), KubeletKnob())

# Values this VM has, values it lacks, and things it cannot have (cpufreq, EPB, a second idle
# state to keep, an ens* NIC, ethtool settings on the virtual ifb0).
CAPTURE_PROFILE = Profile.model_validate(
    {
        "name": "platform-capture",
        "cpu": {
            "reserved": "0",
            "isolated": "1",
            "governor": "performance",
            "energy_perf_bias": "performance",
            "max_cstate": 0,
            "min_perf_pct": 100,
            "boost": False,
        },
        "irq": {"affinity": "reserved", "irqbalance": "ban-isolated"},
        "network": {
            "interfaces": [
                {
                    "match": "eth*",
                    "coalesce": {"rx_usecs": 0, "tx_usecs": 8, "adaptive_rx": False},
                    "rings": {"rx": 256, "tx": 1024},
                    "channels": "reserved",
                    "rps": "reserved",
                    "xps": "reserved",
                },
                {"match": "ifb0", "rings": {"rx": 128}},
                {"match": "ens*", "coalesce": {"rx_usecs": 0}},
            ]
        },
        "containers": {
            "kubelet": {
                "cpu_manager_policy": "static",
                "cpu_manager_policy_options": {"full-pcpus-only": "true"},
                "topology_manager_policy": "single-numa-node",
                "topology_manager_scope": "pod",
                "memory_manager_policy": "Static",
                "reserved_system_cpus": "reserved",
                "system_reserved": {"memory": "512Mi", "cpu": "500m"},
                "kube_reserved": {"memory": "512Mi"},
            },
            "systemd": {"cpu_affinity": "reserved"},
        },
    }
)

# ``platform-vm-tuned``: runtime values written (the original is read back first) ...
TUNED_WRITES = (
    ("/proc/irq/default_smp_affinity", "1"),
    ("/sys/devices/system/cpu/cpu1/cpuidle/state1/disable", "1"),
    ("/sys/class/net/eth0/queues/rx-0/rps_cpus", "1"),
)
# ... every IRQ's smp_affinity_list set to this, and these files created (then removed).
TUNED_IRQ_AFFINITY = "0"
TUNED_FILES = {
    "/etc/systemd/system.conf.d/90-quietcore-capture.conf": "[Manager]\nCPUAffinity=0\n",
    # kubeadm's generated configuration, with part of the profile's CPU manager settings.
    "/var/lib/kubelet/config.yaml": """\
apiVersion: kubelet.config.k8s.io/v1beta1
authentication:
  anonymous:
    enabled: false
  webhook:
    cacheTTL: 0s
    enabled: true
  x509:
    clientCAFile: /etc/kubernetes/pki/ca.crt
authorization:
  mode: Webhook
  webhook:
    cacheAuthorizedTTL: 0s
    cacheUnauthorizedTTL: 0s
cgroupDriver: systemd
clusterDNS:
- 10.96.0.10
clusterDomain: cluster.local
cpuManagerPolicy: static
cpuManagerPolicyOptions:
  full-pcpus-only: "true"
cpuManagerReconcilePeriod: 0s
evictionPressureTransitionPeriod: 0s
healthzBindAddress: 127.0.0.1
healthzPort: 10248
kind: KubeletConfiguration
kubeReserved:
  memory: 256Mi
logging:
  flushFrequency: 0
  verbosity: 0
memorySwap: {}
reservedSystemCPUs: "0"
rotateCertificates: true
staticPodPath: /etc/kubernetes/manifests
systemReserved:
  cpu: 500m
  memory: 512Mi
topologyManagerPolicy: best-effort
""",
}
IRQBALANCE_CONFIG = Path("/etc/default/irqbalance")
# ``platform-vm-irqbalance-list`` (daemon running) and ``-legacy`` (daemon stopped): lines
# appended to the Debian package's /etc/default/irqbalance.
IRQBALANCE_LIST = "IRQBALANCE_BANNED_CPULIST=1\n"
IRQBALANCE_LEGACY = "IRQBALANCE_BANNED_CPUS=2\nIRQBALANCE_BANNED_CPULIST=0\n"


def capture_topology(name: str) -> Topology:
    """A capture's host, as the topology parser reads it."""
    return parse_topology(load_readings(name))


def _capture(name: str) -> None:
    spec = merge_reads([TOPOLOGY_READS, *(family.reads(CAPTURE_PROFILE) for family in FAMILIES)])
    (BUNDLES / f"{name}.txt").write_text(capture_local(spec))


@contextmanager
def _irq_affinities_kept() -> Iterator[list[Path]]:
    files = sorted(Path("/proc/irq").glob("[0-9]*/smp_affinity_list"))
    originals = [(path, path.read_text().strip()) for path in files]
    try:
        yield files
    finally:
        for path, text in originals:
            _write_irq_affinity(path, text)


def _write_irq_affinity(path: Path, cpus: str) -> None:
    # The kernel refuses writes to a managed IRQ (on this VM: IRQ 36, the virtio-blk queue).
    with suppress(OSError):
        path.write_text(cpus)


@contextmanager
def _files_created(contents: dict[str, str]) -> Iterator[None]:
    """Create files (and missing directories); remove exactly what was created."""
    created: list[Path] = []
    try:
        for name, text in contents.items():
            path = Path(name)
            missing = [parent for parent in reversed(path.parents) if not parent.exists()]
            for directory in missing:
                directory.mkdir()
                created.append(directory)
            path.write_text(text)
            created.append(path)
        yield
    finally:
        for path in reversed(created):
            if path.is_dir():
                path.rmdir()
            else:
                path.unlink()


@contextmanager
def _written(writes: tuple[tuple[str, str], ...]) -> Iterator[None]:
    originals: list[tuple[Path, str]] = []
    try:
        for name, value in writes:
            path = Path(name)
            originals.append((path, path.read_text().strip()))
            path.write_text(value)
        yield
    finally:
        for path, text in reversed(originals):
            path.write_text(text)


@contextmanager
def _appended(path: Path, text: str) -> Iterator[None]:
    original = path.read_text()
    path.write_text(original + text)
    try:
        yield
    finally:
        path.write_text(original)


@contextmanager
def _irqbalance_running() -> Iterator[None]:
    daemon = subprocess.Popen(["/usr/sbin/irqbalance", "--foreground"])
    try:
        time.sleep(1)
        yield
    finally:
        daemon.terminate()
        daemon.wait(timeout=10)


def _apt(*args: str) -> None:
    subprocess.run(
        ["apt-get", *args], check=True, env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    )


def _main() -> None:
    if shutil.which("irqbalance") or Path("/usr/sbin/irqbalance").exists():
        raise SystemExit("uninstall irqbalance first: the default capture shows a host without it")
    _capture("platform-vm-default")
    with _irq_affinities_kept() as files, _written(TUNED_WRITES), _files_created(TUNED_FILES):
        for path in files:
            _write_irq_affinity(path, TUNED_IRQ_AFFINITY)
        _capture("platform-vm-tuned")
    _apt("install", "-y", "irqbalance")
    try:
        with (
            _appended(IRQBALANCE_CONFIG, IRQBALANCE_LIST),
            _irq_affinities_kept(),
            _irqbalance_running(),
        ):
            _capture("platform-vm-irqbalance-list")
        with _appended(IRQBALANCE_CONFIG, IRQBALANCE_LEGACY):
            _capture("platform-vm-irqbalance-legacy")
    finally:
        _apt("purge", "-y", "irqbalance")


if __name__ == "__main__":
    _main()
