"""OpenSSH to a lab: the argv (pinned host key, the lab's key only) and waiting for a boot."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from quietcore.lab.spec import LabError
from quietcore.lab.tools import which

_BOOT_ID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def ssh_argv(
    port: int, client_key: Path, known_hosts: Path, *, batch: bool = True, ssh: str = "ssh"
) -> list[str]:
    """ssh options for a lab, up to and including the destination (append a command)."""
    options = {
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": "yes",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "PasswordAuthentication": "no",
        "LogLevel": "ERROR",
        "ConnectTimeout": "10",
        "ServerAliveInterval": "5",
        "ServerAliveCountMax": "3",
    }
    if batch:
        options["BatchMode"] = "yes"
    argv = [ssh, "-F", "/dev/null", "-i", str(client_key), "-p", str(port)]
    for key, value in options.items():
        argv += ["-o", f"{key}={value}"]
    return [*argv, "root@127.0.0.1"]


class Guest:
    """SSH to one running lab."""

    def __init__(self, port: int, client_key: Path, known_hosts: Path) -> None:
        self.port = port
        self.client_key = client_key
        self.known_hosts = known_hosts

    def argv(self, command: Sequence[str] = (), *, batch: bool = True) -> list[str]:
        base = ssh_argv(self.port, self.client_key, self.known_hosts, batch=batch, ssh=which("ssh"))
        return [*base, "--", *command] if command else base

    def run(self, command: Sequence[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(command), capture_output=True, text=True, timeout=timeout, check=False
        )

    def boot_id(self, timeout: float = 20) -> str | None:
        """The guest's boot id, or None when it does not answer (yet)."""
        try:
            done = self.run(["cat", "/proc/sys/kernel/random/boot_id"], timeout=timeout)
        except subprocess.TimeoutExpired:
            return None
        text = done.stdout.strip()
        return text if done.returncode == 0 and _BOOT_ID.fullmatch(text) else None

    def wait_for_boot(
        self,
        timeout: float,
        *,
        previous: str | None = None,
        check: Callable[[], None] = lambda: None,
        interval: float = 1.0,
    ) -> str:
        """Poll until SSH answers with a boot id other than ``previous``; return it.
        Raises LabError after ``timeout`` seconds, and whatever ``check()`` raises (it is
        called before each try: qemu gone, a kernel panic on the console...)."""
        deadline = time.monotonic() + timeout
        while True:
            check()
            boot_id = self.boot_id(timeout=max(5.0, min(20.0, deadline - time.monotonic())))
            if boot_id is not None and boot_id != previous:
                return boot_id
            if time.monotonic() > deadline:
                raise LabError(f"the guest did not answer SSH within {timeout:.0f} s")
            time.sleep(interval)
