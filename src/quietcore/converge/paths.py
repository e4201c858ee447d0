"""Where quietcore keeps its state: on each host, and on the controller."""

from __future__ import annotations

import os
import re
from pathlib import Path

HOST_STATE_DIR = "/var/lib/quietcore"
SNAPSHOT = f"{HOST_STATE_DIR}/snapshot.json"
# Kept by rollback: an audit trail that removed itself would not be append-only.
JOURNAL = f"{HOST_STATE_DIR}/journal.jsonl"
BACKUP_DIR = f"{HOST_STATE_DIR}/backup"
BOOT_SCRIPT = "/etc/quietcore/boot.sh"
BOOT_UNIT_NAME = "quietcore-boot.service"
BOOT_UNIT = f"/etc/systemd/system/{BOOT_UNIT_NAME}"
# Enables the unit with a plain file instead of `systemctl enable`'s symlink, so removing the
# file disables it and rollback needs no command that the unit file must outlive.
BOOT_WANTS = "/etc/systemd/system/multi-user.target.d/90-quietcore-boot.conf"
BOOT_STATUS = "/run/quietcore/boot-status"

STATE_DIR_ENV = "QUIETCORE_STATE_DIR"
_UNSAFE_IN_NAME = re.compile(r"[^A-Za-z0-9@._-]")


def backup_path(path: str) -> str:
    """Where the original of a file quietcore rewrites is kept on the host."""
    return BACKUP_DIR + path


def controller_state_dir() -> Path:
    """``$QUIETCORE_STATE_DIR``, else ``$XDG_STATE_HOME/quietcore`` (``~/.local/state``)."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "quietcore"


def controller_host_dir(host: str) -> Path:
    """The controller's copy of one host's snapshot and journal."""
    return controller_state_dir() / "hosts" / _UNSAFE_IN_NAME.sub("_", host)
