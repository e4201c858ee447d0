"""The qemu side of a lab: the command line (pure) and the process (start, find, stop).

qemu runs daemonized (``-daemonize -pidfile``) so that a lab outlives the ``lab up`` command
that started it; every path that can leave one behind (``lab down``, a failed ``lab up``, the
test fixture, the next ``lab up`` after a killed run) ends it through ``stop``. A pid is only
ever signalled after ``/proc/<pid>/cmdline`` shows it is this lab's qemu (its pidfile path),
never on the strength of a pidfile alone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from quietcore.lab.recipe import BYPASS_MAC, DATA_MAC, MGMT_MAC
from quietcore.lab.spec import Accel, LabError, LabSpec
from quietcore.lab.tools import which

log = logging.getLogger(__name__)

QEMU = "qemu-system-x86_64"


@dataclass(frozen=True)
class Launch:
    """Everything of one qemu start besides the lab's shape."""

    accel: Accel
    disk: Path  # the lab's qcow2 overlay
    ssh_port: int  # on 127.0.0.1, forwarded to the guest's port 22
    pidfile: Path
    console_log: Path
    daemonize: bool = True


def _escape(value: str | Path) -> str:
    """qemu option values separate with ',' (a literal comma is written ',,')."""
    return str(value).replace(",", ",,")


def numa_args(spec: LabSpec) -> list[str]:
    """One RAM backend and one ``-numa node`` per node, memory split evenly."""
    if spec.numa_nodes == 1:
        return []
    args: list[str] = []
    for node in range(spec.numa_nodes):
        first, last = spec.node_cpus(node)
        cpus = str(first) if first == last else f"{first}-{last}"
        args += [
            "-object",
            f"memory-backend-ram,id=mem{node},size={spec.node_memory_mib}M",
            "-numa",
            f"node,nodeid={node},cpus={cpus},memdev=mem{node}",
        ]
    return args


def bypass_nic_args(spec: LabSpec) -> list[str]:
    """A NIC for kernel-bypass tests (bound to vfio-pci and back), behind a PCIe expander bridge
    on the last NUMA node, so its NUMA locality differs from node 0's. Its network goes nowhere."""
    node = spec.numa_nodes - 1
    bridge = [f"pxb-pcie,id=pxb{node},bus_nr=128,numa_node={node},bus=pcie.0"] if node else []
    bus = f"pxb{node}" if node else "pcie.0"
    return [
        "-netdev",
        "user,id=bypass,restrict=on",
        *(arg for device in bridge for arg in ("-device", device)),
        "-device",
        f"pcie-root-port,id=bypassport,bus={bus},chassis=9,slot=0",
        "-device",
        f"virtio-net-pci,netdev=bypass,bus=bypassport,mac={BYPASS_MAC}",
    ]


def qemu_command(spec: LabSpec, launch: Launch, qemu: str = QEMU) -> list[str]:
    """The full qemu argv for a lab. No ``-kernel``/``-append``: the guest boots with GRUB
    from its own disk, so command-line changes made inside it survive a reboot."""
    accel = "kvm" if launch.accel == "kvm" else "tcg,thread=multi"
    queues = spec.nic_queues
    command = [
        qemu,
        "-name",
        f"{spec.host},debug-threads=on",
        "-nodefaults",
        "-no-user-config",
        "-machine",
        "q35",
        # A VT-d IOMMU (the guest enables it with intel_iommu=on): what vfio-pci needs to bind a
        # device, and what the kernel-bypass readiness checks read back.
        "-device",
        "intel-iommu,intremap=off",
        "-accel",
        accel,
        "-cpu",
        "host" if launch.accel == "kvm" else "max",
        "-smp",
        f"cpus={spec.cpus},sockets={spec.numa_nodes},cores={spec.cores_per_socket},"
        f"threads={spec.threads}",
        "-m",
        f"{spec.memory_mib}M",
        *numa_args(spec),
        "-drive",
        f"file={_escape(launch.disk)},if=none,id=disk,format=qcow2,cache=unsafe,discard=unmap",
        # On the root bus by name: qemu would put a bus-less device behind the expander bridge.
        "-device",
        "virtio-blk-pci,drive=disk,bus=pcie.0",
        # Management NIC: user-mode network, no route out (restrict=on), SSH on loopback only.
        "-netdev",
        f"user,id=mgmt,restrict=on,hostfwd=tcp:127.0.0.1:{launch.ssh_port}-:22",
        "-device",
        f"virtio-net-pci,netdev=mgmt,mac={MGMT_MAC}",
        # Data NIC: a tap connected to nothing, with a queue pair and 2 MSI-X vectors per queue
        # (+ config + control), like the multi-queue NIC a profile tunes.
        "-netdev",
        f"tap,id=data,ifname={spec.tap},script=no,downscript=no,queues={queues},vhost=off",
        "-device",
        f"virtio-net-pci,netdev=data,mq=on,vectors={2 * queues + 2},mac={DATA_MAC}",
        "-device",
        "virtio-rng-pci",
        *bypass_nic_args(spec),
        "-display",
        "none",
        "-serial",
        f"file:{_escape(launch.console_log)}",
        "-pidfile",
        str(launch.pidfile),
    ]
    if launch.daemonize:
        command.append("-daemonize")
    return command


# --- the process ------------------------------------------------------------------------------


def _cmdline(pid: int) -> list[str]:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rpartition(")")[2].split()[0]


def read_pid(pidfile: Path) -> int | None:
    try:
        return int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return None


def running_pid(pidfile: Path) -> int | None:
    """The pid of the qemu that owns ``pidfile``, if that process is alive; None otherwise
    (no pidfile, a dead pid, or a pid since reused by another program)."""
    pid = read_pid(pidfile)
    if pid is None:
        return None
    argv = _cmdline(pid)
    if not argv or "qemu-system" not in Path(argv[0]).name or str(pidfile) not in argv:
        return None
    return None if _state(pid) in ("Z", "X", "") else pid


def start(spec: LabSpec, launch: Launch) -> int:
    """Start qemu daemonized and return its pid. qemu's parent exits only once the VM is
    set up, so configuration errors (a busy port, no KVM, no tap) come back here."""
    launch.pidfile.unlink(missing_ok=True)
    command = qemu_command(spec, launch, which(QEMU))
    log.debug("qemu: %s", command)
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    pid = running_pid(launch.pidfile)
    if done.returncode != 0 or pid is None:
        if pid is not None:
            stop(launch.pidfile)
        message = (done.stderr or done.stdout).strip() or f"qemu exited {done.returncode}"
        raise QemuStartError(message)
    return pid


class QemuStartError(LabError):
    """qemu refused to start; the message is qemu's."""

    @property
    def port_busy(self) -> bool:
        return "host forwarding rule" in str(self)


def stop(pidfile: Path, timeout: float = 10) -> bool:
    """End this lab's qemu: SIGTERM, then SIGKILL. True if a process was ended."""
    pid = running_pid(pidfile)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, timeout)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and running_pid(pidfile) == pid:
            time.sleep(0.05)
        if running_pid(pidfile) != pid:
            break
    if running_pid(pidfile) == pid:
        raise LabError(f"qemu (pid {pid}) did not exit after SIGKILL")
    pidfile.unlink(missing_ok=True)
    return True


def kvm_usable(kernel: Path, probe_seconds: float = 15.0) -> tuple[bool, str]:
    """Whether KVM runs the lab's kernel here, found by trying: /dev/kvm must open, and the
    guest's own kernel, started under KVM with the lab's CPU model, must print its banner.
    (Some nested hypervisors accept KVM and run the firmware, yet a stock kernel never
    starts, or qemu aborts on an MSR.) Returns (usable, reason)."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
        os.close(fd)
    except OSError as problem:
        return False, f"/dev/kvm: {problem.strerror}"
    import tempfile

    with tempfile.TemporaryDirectory(prefix="qc-kvm-") as tmp:
        serial = Path(tmp) / "serial.log"
        command = [
            which(QEMU),
            "-nodefaults",
            "-no-user-config",
            "-machine",
            "q35",
            "-accel",
            "kvm",
            "-cpu",
            "host",
            "-m",
            "256M",
            "-display",
            "none",
            "-serial",
            f"file:{_escape(serial)}",
            "-kernel",
            str(kernel),
            "-append",
            "console=ttyS0 panic=-1",
            "-no-reboot",
        ]
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        try:
            deadline = time.monotonic() + probe_seconds
            while time.monotonic() < deadline:
                exited = process.poll() is not None
                text = serial.read_text(errors="replace") if serial.exists() else ""
                if "Linux version" in text:
                    return True, "the lab kernel booted under KVM"
                if exited:
                    break
                time.sleep(0.1)
        finally:
            process.kill()
            _, stderr = process.communicate()
        errors = [line for line in (stderr or "").splitlines() if "warning" not in line]
        if errors:
            return False, f"qemu with KVM failed: {errors[0].strip()}"
        return False, f"the lab kernel printed nothing under KVM within {probe_seconds:.0f} s"
