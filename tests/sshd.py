"""A real OpenSSH server on a loopback port, for tests that must cross SSH.

Root only (sshd needs it to switch users). Keys are generated per test session; the server
listens on 127.0.0.1 alone and logs at VERBOSE, so tests can count the sessions and commands
each client opened (``Starting session: command``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


@dataclass
class SshServer:
    port: int
    client_key: Path
    known_hosts: Path
    log: Path
    process: subprocess.Popen[bytes]

    def inventory(self, directory: Path, name: str = "loopback") -> Path:
        """A pyinfra inventory file with one host reaching this server."""
        path = directory / f"{name}.py"
        data = {
            "ssh_hostname": "127.0.0.1",
            "ssh_port": self.port,
            "ssh_user": "root",
            "ssh_key": str(self.client_key),
            "ssh_known_hosts_file": str(self.known_hosts),
            "ssh_allow_agent": False,
            "ssh_look_for_keys": False,
        }
        path.write_text(f"hosts = [({name!r}, {data!r})]\n")
        return path

    def commands_run(self) -> int:
        return sum("Starting session: command" in line for line in self._log_lines())

    def sftp_sessions(self) -> int:
        return sum("Starting session: subsystem 'sftp'" in line for line in self._log_lines())

    def logins(self) -> int:
        return sum("Accepted publickey" in line for line in self._log_lines())

    def _log_lines(self) -> list[str]:
        return self.log.read_text(errors="replace").splitlines() if self.log.exists() else []

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start_sshd(directory: Path) -> SshServer:
    host_key = directory / "host_ed25519"
    client_key = directory / "client_ed25519"
    for key in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    authorized = directory / "authorized_keys"
    authorized.write_text(client_key.with_suffix(".pub").read_text())
    authorized.chmod(0o600)
    port = _free_port()
    known_hosts = directory / "known_hosts"
    public_host_key = host_key.with_suffix(".pub").read_text().split()
    known_hosts.write_text(f"[127.0.0.1]:{port} {public_host_key[0]} {public_host_key[1]}\n")
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {host_key}",
                f"AuthorizedKeysFile {authorized}",
                "PermitRootLogin prohibit-password",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                "StrictModes no",
                f"PidFile {directory / 'sshd.pid'}",
                "LogLevel VERBOSE",
                # As a stock sshd has it: pyinfra uploads files over SFTP.
                "Subsystem sftp internal-sftp",
            ]
        )
        + "\n"
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # privilege separation directory sshd insists on
    log = directory / "sshd.log"
    process = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config), "-E", str(log)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return SshServer(port, client_key, known_hosts, log, process)
        except OSError:
            if process.poll() is not None:
                output = log.read_text() if log.exists() else ""
                raise RuntimeError(f"sshd exited: {output}") from None
            time.sleep(0.05)
    process.kill()
    raise RuntimeError("sshd did not start listening within 10 s")
