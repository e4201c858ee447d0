"""A fleet of OpenSSH hosts on this machine, for fleet tests and benchmarks/fleet.py.

Host K is network namespace ``qcfleetK``: a veth pair joins it to this machine (``qcfleetK``
here, ``eth0`` there) on its own /30 of 10.231.0.0/16, and its own sshd (own host key, root
login by the fleet's client key, VERBOSE log) listens on that host's address alone. The
namespaces have no default route, so only this machine can reach them.

Every host also gets a /root of its own (an empty directory bind-mounted in the sshd's mount
namespace): it sees none of this machine's root dotfiles, so a remote command does not pay
for what this machine's ~/.bashrc sets up (pyenv here: ~100 ms per command). A stock server's
root has no such start-up either, and raw ssh, Ansible and quietcore all run on equal terms.

Root only. ``Fleet.stop`` kills every process in the namespaces and deletes the links and the
namespaces; ``leftovers`` says what of a fleet is still on the machine.
"""

from __future__ import annotations

import enum
import ipaddress
import json
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

from tests.sshd import SSHD

PREFIX = "qcfleet"  # the namespaces and this machine's ends of the veth pairs
NETWORK = ipaddress.IPv4Network("10.231.0.0/16")
# Longer than any command timeout a test gives quietcore, far shorter than a test run.
SLOW_ANSWER_S = 60
START_TIMEOUT_S = 20
COMMAND_STARTED = re.compile(r"^Starting session: (?:forced-)?command", re.MULTILINE)


class Fault(enum.Enum):
    """What can be wrong with one host of the fleet (all on the host's side)."""

    # sshd presents a host key other than the one the inventory's known_hosts records.
    HOST_KEY_CHANGED = "host key changed"
    # authorized_keys holds another key: the fleet's client key is refused.
    CLIENT_KEY_REFUSED = "client key refused"
    # Every command waits SLOW_ANSWER_S before it runs.
    SLOW = "slow"
    # The first command kills that host's sshd: the listener and the command's own connection.
    DIES_MID_COMMAND = "dies mid-command"


@dataclass
class FleetHost:
    index: int
    name: str
    namespace: str
    address: str
    directory: Path
    recorded_host_key: str  # "type base64", as known_hosts has it
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.directory / "sshd.log"

    def commands_run(self) -> int:
        """Commands this host's sshd started (a fault's ForceCommand counts as the command)."""
        if not self.log.exists():
            return 0
        return len(COMMAND_STARTED.findall(self.log.read_text(errors="replace")))


@dataclass
class Fleet:
    directory: Path
    client_key: Path
    hosts: list[FleetHost] = field(default_factory=list)

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    def ssh_options(self) -> list[str]:
        """OpenSSH client options that reach any host of the fleet as pyinfra does."""
        return [
            *("-F", "/dev/null", "-i", str(self.client_key), "-l", "root"),
            *("-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none", "-o", "BatchMode=yes"),
            *("-o", f"UserKnownHostsFile={self.known_hosts}"),
            *("-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=10"),
        ]

    def inventory(self, path: Path) -> Path:
        """A pyinfra inventory file with every host (names fleet-00, fleet-01, ...)."""
        hosts = [
            (
                host.name,
                {
                    "ssh_hostname": host.address,
                    "ssh_user": "root",
                    "ssh_key": str(self.client_key),
                    "ssh_known_hosts_file": str(self.known_hosts),
                    "ssh_strict_host_key_checking": "yes",
                    "ssh_allow_agent": False,
                    "ssh_look_for_keys": False,
                },
            )
            for host in self.hosts
        ]
        path.write_text(f"hosts = {hosts!r}\n")
        return path

    def busy_hosts(self) -> list[str]:
        """The hosts where anything besides the listening sshd runs (a session, or one ending)."""
        return [host.name for host in self.hosts if len(_namespace_pids(host.namespace)) > 1]

    def stop(self) -> None:
        """Kill every process in the fleet's namespaces, delete the links and namespaces."""
        for host in self.hosts:
            _kill_everything_in(host.namespace)
            if host.process is not None:
                host.process.wait(timeout=10)
        # Deleting a namespace frees its devices later, from a kernel worker: deleting the
        # links first makes them gone by the time stop returns.
        created = _existing_namespaces() & {host.namespace for host in self.hosts}
        _ip_batch(
            [f"link del {name}" for name in sorted(created) if _link_exists(name)]
            + [f"netns del {name}" for name in sorted(created)]
        )


def leftovers() -> list[str]:
    """What any fleet left on this machine: namespaces, links, processes in the namespaces."""
    names = _existing_namespaces()
    found = [f"network namespace {name}" for name in sorted(names)]
    found += [f"link {name}" for name in _fleet_links()]
    found += [f"process {pid} in {name}" for name in sorted(names) for pid in _namespace_pids(name)]
    return found


def start_fleet(count: int, directory: Path, faults: Mapping[int, Fault] | None = None) -> Fleet:
    """``count`` hosts, each with its own namespace, address, host key and sshd;
    ``faults`` makes the hosts at those indexes misbehave. Stop it with ``Fleet.stop``."""
    faults = faults or {}
    if found := leftovers():
        raise RuntimeError(f"another fleet is running or was not torn down: {', '.join(found)}")
    _refuse_overlapping_routes()
    client_key = _keygen(directory / "client_ed25519")
    fleet = Fleet(directory, client_key)
    try:
        _add_hosts(fleet, count, faults)
        _write_known_hosts(fleet)
        for host in fleet.hosts:
            host.process = _start_sshd(host, client_key, faults.get(host.index))
        _wait_listening(fleet.hosts)
    except BaseException:
        fleet.stop()
        raise
    return fleet


def _add_hosts(fleet: Fleet, count: int, faults: Mapping[int, Fault]) -> None:
    here: list[str] = []  # this machine's side, in one `ip -batch`
    there: dict[str, list[str]] = {}  # each namespace's side
    for index, subnet in zip(range(count), NETWORK.subnets(new_prefix=30), strict=False):
        namespace = f"{PREFIX}{index}"
        gateway, address = subnet.hosts()
        host_directory = fleet.directory / namespace
        (host_directory / "root").mkdir(parents=True)
        _keygen(host_directory / "host_ed25519")
        recorded = host_directory / "host_ed25519.pub"
        if faults.get(index) is Fault.HOST_KEY_CHANGED:
            recorded = _keygen(host_directory / "recorded_ed25519").with_suffix(".pub")
        public_key = " ".join(recorded.read_text().split()[:2])
        fleet.hosts.append(
            FleetHost(
                index, f"fleet-{index:02d}", namespace, str(address), host_directory, public_key
            )
        )
        here += [
            f"netns add {namespace}",
            f"link add {namespace} type veth peer name eth0 netns {namespace}",
            f"addr add {gateway}/{subnet.prefixlen} dev {namespace}",
            f"link set {namespace} up",
        ]
        there[namespace] = [
            f"addr add {address}/{subnet.prefixlen} dev eth0",
            "link set eth0 up",
            "link set lo up",
        ]
    _ip_batch(here)
    for namespace, commands in there.items():
        _ip_batch(commands, namespace=namespace)


def _write_known_hosts(fleet: Fleet) -> None:
    fleet.known_hosts.write_text(
        "".join(f"{host.address} {host.recorded_host_key}\n" for host in fleet.hosts)
    )


def _start_sshd(host: FleetHost, client_key: Path, fault: Fault | None) -> subprocess.Popen[bytes]:
    authorized = host.directory / "authorized_keys"
    allowed = client_key
    if fault is Fault.CLIENT_KEY_REFUSED:
        allowed = _keygen(host.directory / "stranger_ed25519")
    authorized.write_text(allowed.with_suffix(".pub").read_text())
    pid_file = host.directory / "sshd.pid"
    config = host.directory / "sshd_config"
    config.write_text(
        _sshd_config(
            address=host.address,
            host_key=host.directory / "host_ed25519",
            authorized_keys=authorized,
            pid_file=pid_file,
            force_command=_force_command(fault, pid_file),
        )
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
    # `ip netns exec` gives the sshd a mount namespace of its own: the bind mount of the host's
    # own /root stays in it.
    return subprocess.Popen(
        [
            *("ip", "netns", "exec", host.namespace, "sh", "-c"),
            'mount --bind "$1" /root && exec "$2" -D -e -f "$3" -E "$4"',
            *("sh", str(host.directory / "root"), SSHD, str(config), str(host.log)),
        ]
    )


def _sshd_config(
    *,
    address: str,
    host_key: Path,
    authorized_keys: Path,
    pid_file: Path,
    force_command: str | None = None,
) -> str:
    """A stock-like sshd configuration: root by key only, SFTP as Debian has it, VERBOSE log
    (one ``Starting session: command`` line per command run)."""
    lines = [
        f"ListenAddress {address}",
        "Port 22",
        f"HostKey {host_key}",
        f"AuthorizedKeysFile {authorized_keys}",
        "PermitRootLogin prohibit-password",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "StrictModes no",
        f"PidFile {pid_file}",
        "LogLevel VERBOSE",
        "Subsystem sftp internal-sftp",
    ]
    if force_command is not None:
        lines.append(f"ForceCommand {force_command}")
    return "\n".join(lines) + "\n"


def _force_command(fault: Fault | None, pid_file: Path) -> str | None:
    if fault is Fault.SLOW:
        return f'sleep {SLOW_ANSWER_S}; exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"'
    if fault is Fault.DIES_MID_COMMAND:
        # $PPID: the sshd process serving this connection; the pid file: the listener.
        return f'kill -KILL "$PPID" "$(cat {pid_file})"'
    return None


def _wait_listening(hosts: Sequence[FleetHost]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    waiting = list(hosts)
    while waiting:
        host = waiting[0]
        assert host.process is not None
        if host.process.poll() is not None:
            log = host.log.read_text() if host.log.exists() else ""
            raise RuntimeError(f"sshd of {host.name} exited: {log}")
        try:
            with socket.create_connection((host.address, 22), timeout=0.2):
                waiting.pop(0)
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"sshd of {host.name} not listening within {START_TIMEOUT_S} s"
                ) from None
            time.sleep(0.02)


def _refuse_overlapping_routes() -> None:
    """The fleet's addresses must not hide a network this machine really reaches."""
    routes = json.loads(
        subprocess.run(
            ["ip", "-j", "-4", "route", "show", "table", "all"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    for route in routes:
        destination = route.get("dst", "default")
        if destination == "default" or not destination[0].isdigit():
            continue
        if ipaddress.ip_network(destination, strict=False).overlaps(NETWORK):
            raise RuntimeError(f"this machine already routes {destination}, inside {NETWORK}")


def _keygen(path: Path) -> Path:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)],
        check=True,
    )
    return path


def _ip_batch(commands: Sequence[str], namespace: str | None = None) -> None:
    if not commands:
        return
    where = ["-n", namespace] if namespace else []
    subprocess.run(
        ["ip", *where, "-batch", "-"], input="\n".join(commands) + "\n", text=True, check=True
    )


def _existing_namespaces() -> set[str]:
    names = Path("/run/netns")
    if not names.is_dir():
        return set()
    return {path.name for path in names.iterdir() if path.name.startswith(PREFIX)}


def _namespace_pids(namespace: str) -> list[int]:
    listed = subprocess.run(
        ["ip", "netns", "pids", namespace], capture_output=True, text=True, check=False
    )
    return [int(pid) for pid in listed.stdout.split()]


def _kill_everything_in(namespace: str) -> None:
    # A listener killed while it accepts may have forked one more child: kill until none is left.
    deadline = time.monotonic() + 10
    while pids := _namespace_pids(namespace):
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes {pids} in {namespace} survive SIGKILL")
        for pid in pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.01)


def _fleet_links() -> list[str]:
    return sorted(name for name in os.listdir("/sys/class/net") if name.startswith(PREFIX))


def _link_exists(name: str) -> bool:
    return Path("/sys/class/net", name).exists()
