#!/usr/bin/env python3
"""Full-audit wall time over a fleet of N sshd hosts on this machine (tests/fleet.py): quietcore
against the practical limit (plain parallel OpenSSH) and against Ansible, in the same run.

Per N, each round runs every tool once, in a rotating order:
  raw ssh    one `ssh HOST cat FILES` per host, all at once: the files quietcore's full audit
             reads (topology and every knob of the profile), same keys and known_hosts;
  ansible    `ansible all -m shell -a 'cat FILES' --forks N` (ansible-core from this venv): one
             task, no fact gathering, pipelining on, python3 named, so Ansible runs at its best;
             its ControlPersist connections are closed after each run, every run starts cold;
  quietcore  `quietcore verify -p PROFILE --format json INVENTORY`, default parallelism.
raw ssh and Ansible run twice: with OpenSSH's default key exchange (sntrup761x25519, post-quantum
and CPU-hungry) and with curve25519-sha256, the one quietcore's SSH library (paramiko)
negotiates, so that the crypto is the same as quietcore's.

Every time counts from starting the command(s) to their end, Python start-up included; a first
round per N is not counted, and the Python tools run from compiled bytecode as installed ones do
(kept in the fleet's scratch directory, even when PYTHONDONTWRITEBYTECODE is set). The hosts'
root has no dotfiles (see tests/fleet.py), so no tool pays for this machine's ~/.bashrc.
Prints a Markdown table of the medians and the ratios the issue sets goals for (quietcore within
1.3x of raw ssh, at least 4x faster than Ansible). Needs root.

    .venv/bin/python -m benchmarks.fleet [--hosts 8 32 64] [--repeat 3] [--profile network-latency]
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tests.fleet import Fleet, start_fleet

from benchmarks.probe import machine
from quietcore.audit import reads_for
from quietcore.profile.load import load_profile

BIN = Path(sys.executable).parent
PARAMIKO_KEX = "curve25519-sha256"


@dataclass(frozen=True)
class Run:
    """One measurement: the hosts (a fleet or the first hosts of one), the files to read, the
    profile quietcore audits, a scratch directory, the key exchange OpenSSH is told to use."""

    fleet: Fleet
    files: tuple[str, ...]
    profile: str
    scratch: Path
    bytecode: Path
    kex: str | None = None

    @property
    def read_command(self) -> str:
        # The shell on the host expands the globs; files a host lacks are not an error.
        return f"cat {' '.join(self.files)} 2>/dev/null; true"

    @property
    def python_environment(self) -> dict[str, str]:
        """Python tools run as installed ones do: from compiled bytecode (written on their first
        run, outside the source tree), whatever PYTHONDONTWRITEBYTECODE this shell has."""
        environment = {**os.environ, "PYTHONPYCACHEPREFIX": str(self.bytecode)}
        environment.pop("PYTHONDONTWRITEBYTECODE", None)
        return environment

    def ssh_options(self) -> list[str]:
        chosen = ["-o", f"KexAlgorithms={self.kex}"] if self.kex else []
        return [*self.fleet.ssh_options(), *chosen]


def raw_ssh(run: Run) -> None:
    clients = [
        subprocess.Popen(
            ["ssh", *run.ssh_options(), host.address, run.read_command],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for host in run.fleet.hosts
    ]
    for host, client in zip(run.fleet.hosts, clients, strict=True):
        output, errors = client.communicate(timeout=120)
        if client.returncode != 0 or b"MemTotal" not in output:
            raise SystemExit(f"raw ssh to {host.name} failed: {errors.decode(errors='replace')}")


def ansible(run: Run) -> None:
    controls = run.scratch / "ansible-cp"
    controls.mkdir()
    inventory = run.scratch / "ansible-hosts.ini"
    inventory.write_text(
        "".join(f"{host.name} ansible_host={host.address}\n" for host in run.fleet.hosts)
        + "[all:vars]\nansible_user=root\n"
        + f"ansible_ssh_private_key_file={run.fleet.client_key}\n"
        + "ansible_python_interpreter=/usr/bin/python3\n"
    )
    ssh_args = [*run.ssh_options(), "-o", "ControlMaster=auto", "-o", "ControlPersist=60s"]
    config = run.scratch / "ansible.cfg"
    config.write_text(
        "[defaults]\nhost_key_checking = True\n"
        + f"local_tmp = {run.scratch / 'ansible-tmp'}\n"
        + f"[ssh_connection]\npipelining = True\ncontrol_path_dir = {controls}\n"
        + f"ssh_args = {' '.join(ssh_args)}\n"
    )
    environment = {
        **run.python_environment,
        "ANSIBLE_CONFIG": str(config),
        "ANSIBLE_HOME": str(run.scratch),
    }
    try:
        done = subprocess.run(
            [
                str(BIN / "ansible"),
                *("all", "-i", str(inventory), "--forks", str(len(run.fleet.hosts))),
                *("-m", "shell", "-a", run.read_command),
            ],
            capture_output=True,
            text=True,
            env=environment,
            check=False,
        )
    finally:
        _close_control_masters(controls)
    answered = {line.split(" | ")[0] for line in done.stdout.splitlines() if "| CHANGED |" in line}
    if done.returncode != 0 or answered != {host.name for host in run.fleet.hosts}:
        raise SystemExit(f"ansible failed ({done.returncode}): {done.stderr[-2000:]}")


def _close_control_masters(controls: Path) -> None:
    """Ansible leaves one ssh master per host running for ControlPersist: end them, so that
    the next run connects afresh like the other tools do."""
    for socket_path in controls.iterdir():
        subprocess.run(
            ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "fleet"],
            capture_output=True,
            check=False,
        )


def quietcore(run: Run) -> None:
    inventory = run.fleet.inventory(run.scratch / "quietcore_inventory.py")
    done = subprocess.run(
        [
            *(sys.executable, "-m", "quietcore", "verify", "-p", run.profile),
            *("--format", "json", str(inventory)),
        ],
        capture_output=True,
        text=True,
        env=run.python_environment,
        check=False,
    )
    audited = json.loads(done.stdout)["summary"] if done.returncode in (0, 1) else {}
    if audited.get("hosts") != len(run.fleet.hosts) or audited.get("unreachable"):
        raise SystemExit(f"quietcore verify failed ({done.returncode}): {done.stderr}")


# Each tool: how it runs, and the key exchange OpenSSH is told to use (None: its default).
TOOLS: dict[str, tuple[Callable[[Run], None], str | None]] = {
    "raw ssh": (raw_ssh, None),
    "raw ssh, curve25519": (raw_ssh, PARAMIKO_KEX),
    "ansible": (ansible, None),
    "ansible, curve25519": (ansible, PARAMIKO_KEX),
    "quietcore": (quietcore, None),
}


def timed(command: Callable[[], None]) -> float:
    started = time.monotonic()
    command()
    return time.monotonic() - started


def wait_idle(fleet: Fleet) -> None:
    """Let the hosts finish closing the last run's sessions before the next run starts."""
    deadline = time.monotonic() + 30
    while busy := fleet.busy_hosts():
        if time.monotonic() > deadline:
            raise SystemExit(f"sessions still open 30 s after the run: {', '.join(busy)}")
        time.sleep(0.05)


def measure(fleet: Fleet, count: int, profile: str, repeat: int) -> dict[str, float]:
    """Median seconds per tool over ``repeat`` rounds on the fleet's first ``count`` hosts,
    after one round that is not counted (it compiles bytecode, fills the page cache)."""
    files = reads_for(load_profile(profile)).files
    hosts = Fleet(fleet.directory, fleet.client_key, fleet.hosts[:count])
    names = list(TOOLS)
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_number in range(-1, repeat):
        # Rotating the order keeps whatever warms up (page cache, sshd) from favouring one tool.
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            tool, kex = TOOLS[name]
            with tempfile.TemporaryDirectory(prefix="qc-bench-") as scratch:
                run = Run(hosts, files, profile, Path(scratch), fleet.directory / "bytecode", kex)
                seconds = timed(functools.partial(tool, run))
            wait_idle(hosts)
            if round_number < 0:
                continue
            times[name].append(seconds)
            print(
                f"N={count} round {round_number + 1}/{repeat}: {name} {seconds:.2f} s",
                file=sys.stderr,
            )
    return {name: statistics.median(values) for name, values in times.items()}


def table(medians: dict[int, dict[str, float]]) -> str:
    lines = [
        "| N | raw ssh s | ansible s | quietcore s | quietcore/raw | ansible/quietcore "
        "| raw ssh, curve25519 s | ansible, curve25519 s | quietcore/raw, curve25519 "
        "| ansible, curve25519/quietcore |",
        "| ---: " * 10 + "|",
    ]
    for count, row in medians.items():
        ours = row["quietcore"]
        raw, slow = row["raw ssh"], row["ansible"]
        same_raw, same_slow = row["raw ssh, curve25519"], row["ansible, curve25519"]
        lines.append(
            f"| {count} | {raw:.2f} | {slow:.2f} | {ours:.2f} | {ours / raw:.2f}x "
            f"| {slow / ours:.2f}x | {same_raw:.2f} | {same_slow:.2f} | {ours / same_raw:.2f}x "
            f"| {same_slow / ours:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[8, 32, 64], help="fleet sizes")
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell (default 3)")
    parser.add_argument("--profile", default="network-latency", help="profile quietcore audits")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="qc-fleet-") as directory:
        fleet = start_fleet(max(args.hosts), Path(directory))
        try:
            medians = {
                count: measure(fleet, count, args.profile, args.repeat) for count in args.hosts
            }
        finally:
            fleet.stop()
    print(
        f"{machine()}; a fleet of network namespaces on this machine; profile {args.profile}; "
        f"medians of {args.repeat}; raw ssh and Ansible run `cat FILES`, quietcore its "
        "one-round-trip read of the same files"
    )
    print()
    print(table(medians))


if __name__ == "__main__":
    main()
