"""TuneD's side of benchmarks/isolation.py: run the Debian-packaged TuneD daemon with the
`cpu-partitioning` profile on this host without systemd or D-Bus, and stop it again.

`tuned --no-dbus --profile cpu-partitioning` in the foreground is the daemon as systemd would
run it, minus the D-Bus API: it applies the profile, logs "static tuning from profile '...'
applied", keeps running (dynamic tuning, the scheduler plugin's perf watch) and rolls back on
SIGTERM. Without systemd TuneD 2.20 always does a *soft* rollback (daemon.py
``_full_rollback_required`` asks `systemctl is-system-running`; it cannot tell a shutdown from a
stop): runtime values go back, but the CPUAffinity line it wrote into /etc/systemd/system.conf,
its /etc/tuned state files and the bootloader's files stay. The benchmark's own file snapshot
puts those back (see isolation_host.py).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

PROFILE = "cpu-partitioning"
VARIABLES = Path("/etc/tuned/cpu-partitioning-variables.conf")
APPLIED = f"static tuning from profile '{PROFILE}' applied"
# Every file and tree TuneD 2.20's cpu-partitioning profile (with network-latency and
# latency-performance) may write: its state files, systemd's CPUAffinity, the bootloader
# plugin's grub/BLS/initrd output, the modules plugin, the irqbalance plugin, the script's
# KVM module options, sysctl files it re-reads, its run and log directories.
FILE_ROOTS = (
    "/etc/tuned",
    "/etc/systemd",
    "/etc/default",
    "/etc/modprobe.d",
    "/etc/grub.d",
    "/etc/grub2.cfg",
    "/etc/grub2-efi.cfg",
    "/etc/kernel",
    "/etc/dracut.conf.d",
    "/etc/sysctl.d",
    "/etc/sysctl.conf",
    "/etc/sysconfig",
    "/boot",
    "/run/tuned",
    "/var/log/tuned",
)
# A log line: "2026-11-24 01:32:55,845 ERROR    tuned.plugins.plugin_sysctl: Failed ...".
LOG_LINE = re.compile(r"^\S+ \S+ (ERROR|WARNING)\s+(\S+): (.*)$")


class TunedError(RuntimeError):
    """TuneD could not be started, did not apply its profile, or did not stop."""


@dataclass
class Tuned:
    process: subprocess.Popen[bytes]
    log: Path
    scratch: Path


def executable() -> str | None:
    return shutil.which("tuned") or (
        "/usr/sbin/tuned" if os.access("/usr/sbin/tuned", os.X_OK) else None
    )


def start(isolated: str, scratch: Path, timeout_s: float = 120) -> Tuned:
    """Write isolated_cores, start TuneD in the foreground and wait until its log says the
    profile is applied. TuneD's temporary files (the profile's ``mktemp -d``) go to
    ``scratch`` through TMPDIR; its log and PID file too."""
    binary = executable()
    if binary is None:
        raise TunedError("TuneD is not installed (apt-get install tuned)")
    VARIABLES.write_text(f"isolated_cores={isolated}\n")
    log, pid = scratch / "tuned.log", scratch / "tuned.pid"
    output = (scratch / "tuned.out").open("wb")
    process = subprocess.Popen(
        [binary, "--no-dbus", "--profile", PROFILE, "--log", str(log), "--pid", str(pid)],
        env={**os.environ, "TMPDIR": str(scratch)},
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C in the terminal is for the benchmark, not TuneD
    )
    output.close()
    running = Tuned(process, log, scratch)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if APPLIED in read_log(running):
            return running
        if process.poll() is not None:
            raise TunedError(
                f"TuneD exited ({process.returncode}) before applying: {tail(running)}"
            )
        time.sleep(0.1)
    stop(running)
    raise TunedError(f"TuneD did not apply {PROFILE} within {timeout_s:.0f} s: {tail(running)}")


def stop(running: Tuned, timeout_s: float = 60) -> None:
    """SIGTERM (TuneD rolls back, then exits); SIGKILL if it hangs."""
    if running.process.poll() is None:
        running.process.send_signal(signal.SIGTERM)
        try:
            running.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            running.process.kill()
            running.process.wait()
            raise TunedError(f"TuneD did not stop within {timeout_s:.0f} s: killed") from None


def read_log(running: Tuned) -> str:
    try:
        return running.log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def tail(running: Tuned, lines: int = 15) -> str:
    text = read_log(running) or (running.scratch / "tuned.out").read_text(errors="replace")
    return "\n".join(text.splitlines()[-lines:])


def findings(log: str) -> list[str]:
    """TuneD's errors and warnings (first line of each), and how it rolled back: what it did
    *not* do on this host."""
    found: list[str] = []
    for line in log.splitlines():
        if match := LOG_LINE.match(line):
            text = f"{match.group(1)} {match.group(2).rsplit('.', 1)[-1]}: {match.group(3)}"
            if text not in found:
                found.append(text)
        elif "terminating TuneD due to system shutdown" in line:
            found.append("soft rollback: TuneD cannot tell a stop from a shutdown without systemd")
    return found


def running_daemons(proc: Path = Path("/proc")) -> Sequence[int]:
    """PIDs of TuneD daemons already running (another TuneD would fight the benchmark's)."""
    found = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            words = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if any(word.endswith(b"/tuned") or word == b"tuned" for word in words[:2]):
            found.append(int(entry.name))
    return found
