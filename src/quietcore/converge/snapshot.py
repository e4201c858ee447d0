"""The snapshot: every key's value before quietcore first changed a host, and the files it
created or rewrote. Rollback restores exactly this. Pure: (de)serialisation only.

It is written on the host (``/var/lib/quietcore/snapshot.json``) before the first change and
grows, never changes, on later applies: a key or file already in it keeps its first value, so
rollback always returns to the state before quietcore, however many profiles were applied.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from quietcore.steps import Run

SCHEMA = "quietcore.snapshot/v1"
FileOrigin = Literal["created", "backed-up"]


class SnapshotError(ValueError):
    """A snapshot file that is not one quietcore wrote (corrupt, or a newer schema)."""


@dataclass(frozen=True)
class SavedKey:
    family: str
    before: str | None  # None: the key did not exist (a kernel argument not on the cmdline)
    reboot: bool = False  # restoring it takes effect only at boot


@dataclass(frozen=True)
class SavedFile:
    family: str
    origin: FileOrigin  # created: rollback deletes it; backed-up: rollback restores the original
    activate: tuple[Run, ...] = ()
    reboot: bool = False


@dataclass(frozen=True)
class Snapshot:
    host: str
    created: str  # when the first change was made, ISO 8601 UTC
    # The merged profiles applied since: rollback validates them again and reads what they read.
    profiles: tuple[Mapping[str, Any], ...] = ()
    keys: Mapping[str, SavedKey] = field(default_factory=dict)
    files: Mapping[str, SavedFile] = field(default_factory=dict)

    def grown(
        self,
        profile: Mapping[str, Any],
        keys: Mapping[str, SavedKey],
        files: Mapping[str, SavedFile],
    ) -> Snapshot:
        """This snapshot plus what it does not hold yet; first values always win."""
        profiles = self.profiles if profile in self.profiles else (*self.profiles, profile)
        return replace(
            self,
            profiles=profiles,
            keys={**keys, **self.keys},
            files={**files, **self.files},
        )


def _runs(runs: tuple[Run, ...]) -> list[dict[str, Any]]:
    return [{"argv": list(run.argv), "systemd_only": run.systemd_only} for run in runs]


def _parse_runs(raw: Any) -> tuple[Run, ...]:
    return tuple(Run(tuple(item["argv"]), bool(item["systemd_only"])) for item in raw)


def to_json(snapshot: Snapshot) -> str:
    document = {
        "schema": SCHEMA,
        "host": snapshot.host,
        "created": snapshot.created,
        "profiles": list(snapshot.profiles),
        "keys": {
            key: {"family": saved.family, "before": saved.before, "reboot": saved.reboot}
            for key, saved in sorted(snapshot.keys.items())
        },
        "files": {
            path: {
                "family": saved.family,
                "origin": saved.origin,
                "activate": _runs(saved.activate),
                "reboot": saved.reboot,
            }
            for path, saved in sorted(snapshot.files.items())
        },
    }
    return json.dumps(document, indent=1, sort_keys=True) + "\n"


def from_json(text: str, where: str) -> Snapshot:
    """Parse a snapshot; ``where`` names it in errors (``host:/var/lib/quietcore/...``)."""
    try:
        document = json.loads(text)
        if document.get("schema") != SCHEMA:
            raise SnapshotError(f"{where}: not a {SCHEMA} document")
        return Snapshot(
            host=str(document["host"]),
            created=str(document["created"]),
            profiles=tuple(document["profiles"]),
            keys={
                key: SavedKey(str(raw["family"]), raw["before"], bool(raw["reboot"]))
                for key, raw in document["keys"].items()
            },
            files={
                path: SavedFile(
                    str(raw["family"]),
                    raw["origin"],
                    _parse_runs(raw["activate"]),
                    bool(raw["reboot"]),
                )
                for path, raw in document["files"].items()
            },
        )
    except SnapshotError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise SnapshotError(f"{where}: unreadable snapshot ({error})") from error
