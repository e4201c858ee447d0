"""The boot-time persistence for settings the kernel forgets at reboot and no native file
restores (IRQ affinity, per-node hugepages, THP, workqueue mask, governor, ethtool): one
reviewable shell script and the systemd oneshot unit that runs it. Pure: rendering only.

The unit runs after sysinit.target (devices probed, modules loaded, sysctl.d applied) and
before basic.target, which every ordinary service waits for: so before the workload and the
kubelet, without knowing their names.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from quietcore.converge import paths
from quietcore.converge.shell import PRELUDE, step_line
from quietcore.knobs.base import Setting
from quietcore.steps import ManagedFile, Run, Step

FAMILY = "boot"

UNIT = """\
# Rendered by quietcore for profile {profile} (sha256 {digest}).
# Do not edit: `quietcore apply` rewrites it, `quietcore rollback` removes it.
[Unit]
Description=quietcore boot-time tuning (profile {profile})
Documentation=file:{script}
DefaultDependencies=no
After=sysinit.target systemd-udev-settle.service
Before=basic.target kubelet.service shutdown.target
Conflicts=shutdown.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh {script}
"""

WANTS = """\
# Rendered by quietcore: starts {unit} at boot (what `systemctl enable` would
# do, as a file that `quietcore rollback` removes).
[Unit]
Wants={unit}
"""

HEADER = """\
#!/bin/sh
# quietcore boot-time tuning: profile {profile} (sha256 {digest}) on {host}.
# Rendered by `quietcore apply`; do not edit: the next apply rewrites it and
# `quietcore rollback` removes it. Run at every boot by {unit}, it re-applies
# the settings that the kernel forgets at reboot and that no native configuration restores
# (sysctls live in /etc/sysctl.d, kernel arguments in the boot loader). Each block names the
# key, its value, and the profile field it comes from.
"""

FOOTER = f"""\
mkdir -p {paths.BOOT_STATUS.rsplit("/", 1)[0]}
echo "applied {{count}} settings at $(date -u +%Y-%m-%dT%H:%M:%SZ), failures: $qc_failed" \\
    > {paths.BOOT_STATUS}
echo "quietcore: boot tuning applied ({{count}} settings, failures: $qc_failed)"
exit "$qc_failed"
"""


@dataclass(frozen=True)
class BootEntry:
    setting: Setting
    steps: tuple[Step, ...]


def _block(entry: BootEntry) -> str:
    setting = entry.setting
    where = f", {setting.source}" if setting.source else ""
    comment = f"# {setting.key} = {setting.desired}   ({setting.field}{where})"
    return "\n".join([comment, *(step_line(step) for step in entry.steps)])


def boot_files(
    entries: Sequence[BootEntry], host: str, profile: str, digest: str
) -> tuple[ManagedFile, ...]:
    """The script and its unit, or nothing when no setting needs replaying at boot."""
    entries = [entry for entry in entries if entry.steps]
    if not entries:
        return ()
    names = {"profile": profile, "digest": digest, "host": host}
    script = "\n\n".join(
        [
            HEADER.format(unit=paths.BOOT_UNIT_NAME, **names) + PRELUDE,
            *(_block(entry) for entry in entries),
            FOOTER.format(count=len(entries)),
        ]
    )
    reload = (Run(("systemctl", "daemon-reload"), systemd_only=True),)
    return (
        ManagedFile(paths.BOOT_SCRIPT, script, FAMILY, mode="0755"),
        ManagedFile(
            paths.BOOT_UNIT, UNIT.format(script=paths.BOOT_SCRIPT, **names), FAMILY, reload
        ),
        ManagedFile(paths.BOOT_WANTS, WANTS.format(unit=paths.BOOT_UNIT_NAME), FAMILY, reload),
    )
