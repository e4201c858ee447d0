"""The state of one lab on disk: ``<cache>/labs/<name>/`` (lab.json, overlay, keys, logs)."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from quietcore.lab.paths import lab_dir, labs_dir
from quietcore.lab.spec import NAME_PATTERN, Accel, LabSpec
from quietcore.lab.vm import running_pid


@dataclass
class LabState:
    spec: LabSpec
    accel: Accel
    ssh_port: int
    image: str  # the cached image's stem (its recipe key)
    started_at: float = field(default_factory=time.time)
    status: str = "booting"  # booting | up
    boot_seconds: float | None = None

    # --- files of this lab ---
    @property
    def directory(self) -> Path:
        return lab_dir(self.spec.name)

    @property
    def overlay(self) -> Path:
        return self.directory / "overlay.qcow2"

    @property
    def pidfile(self) -> Path:
        return self.directory / "qemu.pid"

    @property
    def console_log(self) -> Path:
        return self.directory / "console.log"

    @property
    def client_key(self) -> Path:
        return self.directory / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.directory / "known_hosts"

    @property
    def inventory(self) -> Path:
        return self.directory / "inventory.py"

    @property
    def pid(self) -> int | None:
        return running_pid(self.pidfile)

    def save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        document = {
            "spec": self.spec.to_dict(),
            "accel": self.accel,
            "ssh_port": self.ssh_port,
            "image": self.image,
            "started_at": self.started_at,
            "status": self.status,
            "boot_seconds": self.boot_seconds,
        }
        partial = self.directory / "lab.json.partial"
        partial.write_text(json.dumps(document, indent=2) + "\n")
        partial.replace(self.directory / "lab.json")

    @classmethod
    def load(cls, name: str) -> LabState | None:
        try:
            document: dict[str, Any] = json.loads((lab_dir(name) / "lab.json").read_text())
            return cls(
                spec=LabSpec.from_dict(document["spec"]),
                accel=document["accel"],
                ssh_port=int(document["ssh_port"]),
                image=str(document["image"]),
                started_at=float(document["started_at"]),
                status=str(document.get("status", "booting")),
                boot_seconds=document.get("boot_seconds"),
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None


def lab_names() -> list[str]:
    """Every lab that has a state directory, running or not."""
    if not labs_dir().is_dir():
        return []
    return sorted(
        path.name
        for path in labs_dir().iterdir()
        if path.is_dir() and NAME_PATTERN.fullmatch(path.name)
    )


def running_labs() -> list[LabState]:
    """Labs whose qemu is alive and whose guest answered SSH."""
    labs = (LabState.load(name) for name in lab_names())
    return [lab for lab in labs if lab is not None and lab.status == "up" and lab.pid is not None]
