"""What apply and rollback would change on one host, computed from one reading. Pure.

A plan lists, per key, the value before and after and how the change happens:

- ``now``: runtime steps set it (and, where the family needs it, a file or the boot script
  keeps it across reboots);
- ``at-boot``: only a reboot makes it true (kernel arguments, systemd's CPUAffinity); the file
  that makes it so is in the plan's files, or already written by an earlier apply;
- ``by-file``: the family's configuration file sets it when written (irqbalance's banned
  CPUs: the file and a service restart); the file is in the plan's files;
- ``effect``: a consequence that proves other keys work (``/sys/.../isolated``); it follows;
- ``manual``: quietcore cannot set it here (a sysctl the kernel lacks), with the reason.

Only ``now`` changes and file writes count as changes: a second apply on an unchanged host has
none. Everything the plan will do is in it, so ``plan`` and ``apply`` cannot disagree.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

from quietcore.audit import HostAudit, audit_host, reads_for, reads_for_profile
from quietcore.converge import paths
from quietcore.converge.boot import BootEntry, boot_files
from quietcore.converge.snapshot import SavedFile, SavedKey, Snapshot, SnapshotError, from_json
from quietcore.drift import SettingResult
from quietcore.facts import merge_reads
from quietcore.knobs.base import Setting
from quietcore.knobs.registry import FAMILIES, family
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import Profile
from quietcore.readings import HostRead, Readings, ReadSpec
from quietcore.steps import ManagedFile, Run, Step, UnsafeStepError
from quietcore.topology import Topology, parse_topology

ChangeKind = Literal["now", "at-boot", "by-file", "effect", "manual"]
FileAction = Literal["create", "update", "remove", "restore"]
PlanKind = Literal["apply", "rollback"]
CANNOT_SET = "quietcore cannot set this key on this host"


@dataclass(frozen=True)
class Change:
    key: str
    family: str
    before: str | None
    after: str | None
    kind: ChangeKind
    reboot: bool
    steps: tuple[Step, ...] = ()
    reason: str = ""
    field: str = ""
    source: str | None = None


@dataclass(frozen=True)
class FileChange:
    path: str
    family: str
    action: FileAction
    file: ManagedFile | None = None  # the new content for create and update
    activate: tuple[Run, ...] = ()
    reboot: bool = False
    existed: bool = False  # update of a file quietcore did not create: back it up first
    before: str | None = None  # ``content_digest`` of what the host has now, for the journal


@dataclass(frozen=True)
class HostPlan:
    host: str
    kind: PlanKind
    audit: HostAudit
    changes: tuple[Change, ...] = ()
    files: tuple[FileChange, ...] = ()
    snapshot: Snapshot | None = None  # to write before the first change (new or grown)
    existing: Snapshot | None = None  # the snapshot the host already had
    error: str | None = None  # why nothing can be planned (unreachable, refused, unsafe)

    @property
    def now(self) -> tuple[Change, ...]:
        return tuple(change for change in self.changes if change.kind == "now")

    @property
    def action_count(self) -> int:
        """What apply would do: runtime changes plus file writes and removals."""
        return len(self.now) + len(self.files)

    @property
    def needs_reboot(self) -> bool:
        """Something only a reboot makes true: a boot-time key drifts, or a boot file changes."""
        return any(change.reboot and change.kind != "manual" for change in self.changes) or any(
            file.reboot for file in self.files
        )


# --- Reading ---------------------------------------------------------------------------------


def managed_reads() -> ReadSpec:
    """Every file quietcore may own, and its snapshot: plan compares them, rollback undoes."""
    owned = [path for knob in FAMILIES for path in knob.managed_paths]
    boot = [paths.BOOT_SCRIPT, paths.BOOT_UNIT, paths.BOOT_WANTS]
    return ReadSpec(files=(*owned, *boot, paths.SNAPSHOT))


def apply_reads(loaded: LoadedProfile) -> ReadSpec:
    return merge_reads([reads_for(loaded), managed_reads()])


def existing_snapshot(host: str, readings: Readings) -> Snapshot | None:
    text = readings.text(paths.SNAPSHOT)
    return None if text is None else from_json(text, f"{host}:{paths.SNAPSHOT}")


# --- Apply -----------------------------------------------------------------------------------


def _how(
    result: SettingResult, readings: Readings, topology: Topology
) -> tuple[ChangeKind, tuple[Step, ...], str]:
    """How a drifted or missing setting would change: its kind, steps and reason."""
    setting = result.setting
    if result.status == "missing":
        return "manual", (), result.reason
    if setting.effect:
        return "effect", (), ""
    steps = family(setting.family).steps_to_set(setting.key, setting.desired, readings, topology)
    if steps:
        return "now", steps, ""
    if setting.reboot_required:
        return "at-boot", (), ""
    if family(setting.family).managed_paths:
        return "by-file", (), ""
    return "manual", (), CANNOT_SET


def _change(result: SettingResult, readings: Readings, topology: Topology) -> Change:
    setting = result.setting
    kind, steps, reason = _how(result, readings, topology)
    return Change(
        setting.key,
        setting.family,
        result.actual,
        setting.desired,
        kind,
        setting.reboot_required,
        steps,
        reason,
        setting.field,
        setting.source,
    )


def content_digest(text: str) -> str:
    """A short, stable name for a file's content in plans and the journal."""
    return "sha256:" + hashlib.sha256(text.removesuffix("\n").encode()).hexdigest()[:16]


def _current_digest(path: str, readings: Readings) -> str | None:
    text = readings.text(path)
    return None if text is None else content_digest(text)


def _same_content(file: ManagedFile, readings: Readings) -> bool:
    # The bundle returns lines: a file's final newline is not visible, so compare without it.
    return readings.text(file.path) == file.content.removesuffix("\n")


def _desired_files(
    results: Sequence[SettingResult],
    readings: Readings,
    topology: Topology,
    host: str,
    loaded: LoadedProfile,
) -> list[ManagedFile]:
    files: list[ManagedFile] = []
    boot: list[BootEntry] = []
    for knob in FAMILIES:
        own = [r for r in results if r.setting.family == knob.name and not r.setting.effect]
        settings = [r.setting for r in own if r.status in ("ok", "drift")]
        if settings:
            files.extend(knob.native_files(settings, readings, topology))
        if knob.boot_script:
            # Immovable keys stay in: whether the kernel refuses a write may only be learnt by
            # trying (a managed IRQ without debugfs), and the script must not change when it is.
            boot.extend(
                BootEntry(
                    r.setting,
                    knob.steps_to_set(r.setting.key, r.setting.desired, readings, topology),
                )
                for r in own
                if r.status in ("ok", "drift", "immovable")
            )
    files.extend(boot_files(boot, host, loaded.profile.name, loaded.digest))
    return files


def _file_changes(
    desired: Iterable[ManagedFile], readings: Readings, existing: Snapshot | None
) -> list[FileChange]:
    changes: list[FileChange] = []
    wanted: dict[str, ManagedFile] = {}
    for file in desired:
        wanted[file.path] = file
        if _same_content(file, readings):
            continue
        present = readings.lines(file.path) is not None
        changes.append(
            FileChange(
                file.path,
                file.family,
                "update" if present else "create",
                file,
                file.activate,
                file.reboot,
                existed=present and (existing is None or file.path not in existing.files),
                before=_current_digest(file.path, readings),
            )
        )
    # Files an earlier apply wrote that this profile no longer needs: undo them.
    for path, saved in (existing.files if existing else {}).items():
        if path not in wanted:
            changes.extend(_undo_file(path, saved, readings))
    return changes


def _undo_file(path: str, saved: SavedFile, readings: Readings) -> list[FileChange]:
    before = _current_digest(path, readings)
    if saved.origin == "backed-up":
        action: FileAction = "restore"
    elif before is None:
        return []
    else:
        action = "remove"
    return [
        FileChange(path, saved.family, action, None, saved.activate, saved.reboot, before=before)
    ]


def _grown_snapshot(
    host: str,
    loaded: LoadedProfile,
    applicable: Sequence[SettingResult],
    files: Sequence[FileChange],
    existing: Snapshot | None,
    now: str,
) -> Snapshot:
    keys = {
        result.setting.key: SavedKey(
            result.setting.family, result.actual, result.setting.reboot_required
        )
        for result in applicable
        if not result.setting.effect
    }
    saved_files = {
        change.path: SavedFile(
            change.family,
            "backed-up" if change.existed else "created",
            change.activate,
            change.reboot,
        )
        for change in files
        if change.action in ("create", "update")
    }
    base = existing or Snapshot(host=host, created=now)
    return base.grown(loaded.profile.model_dump(mode="json"), keys, saved_files)


def plan_apply(loaded: LoadedProfile, read: HostRead, now: str) -> HostPlan:
    """The apply plan for one host: every drifted key, every file to write, the snapshot."""
    audit = audit_host(loaded, read)
    if read.readings is None or audit.topology is None or audit.status == "refused":
        return HostPlan(read.host, "apply", audit, error=audit.error)
    readings, topology = read.readings, audit.topology
    try:
        existing = existing_snapshot(read.host, readings)
        applicable = [result for result in audit.results if result.status in ("ok", "drift")]
        changes = tuple(
            _change(result, readings, topology)
            for result in audit.results
            if result.status in ("drift", "missing")
        )
        desired = _desired_files(audit.results, readings, topology, read.host, loaded)
    except (UnsafeStepError, SnapshotError) as error:
        refused = replace(audit, status="refused", error=str(error))
        return HostPlan(read.host, "apply", refused, error=str(error))
    files = tuple(_file_changes(desired, readings, existing))
    plan = HostPlan(read.host, "apply", audit, changes, files, existing=existing)
    if plan.action_count == 0:
        return plan
    snapshot = _grown_snapshot(read.host, loaded, applicable, files, existing, now)
    return replace(plan, snapshot=None if snapshot == existing else snapshot)


# --- Rollback --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RollbackCheck:
    """One snapshot key on the host now: back to its saved value, or not yet."""

    key: str
    saved: SavedKey
    actual: str | None
    restored: bool
    reason: str = ""


def check_key(key: str, saved: SavedKey, readings: Readings, topology: Topology) -> RollbackCheck:
    """Whether ``key`` has its snapshot value again, judged by its family's comparison; a key
    a running daemon now places (irqbalance and IRQ affinity) counts as handed back to it."""
    knob = family(saved.family)
    daemon = knob.placed_by_daemon(key, readings)
    if daemon is not None:
        return RollbackCheck(key, saved, saved.before, True, daemon)
    seen = knob.observe(_snapshot_setting(key, saved), readings, topology)
    if seen.status in ("unsupported", "immovable"):
        return RollbackCheck(key, saved, seen.actual, True, seen.reason)
    if saved.before is None or seen.actual is None:
        return RollbackCheck(key, saved, seen.actual, saved.before == seen.actual, seen.reason)
    restored = knob.restored(_snapshot_setting(key, saved), seen.actual)
    return RollbackCheck(key, saved, seen.actual, restored, seen.reason)


def _snapshot_setting(key: str, saved: SavedKey) -> Setting:
    return Setting(
        key=key,
        family=saved.family,
        desired=saved.before or "",
        field="snapshot",
        reboot_required=saved.reboot,
    )


def rollback_reads(snapshot: Snapshot) -> ReadSpec:
    """What rollback reads: what every applied profile read, and quietcore's own files."""
    profiles = [Profile.model_validate(document) for document in snapshot.profiles]
    return merge_reads([*(reads_for_profile(profile) for profile in profiles), managed_reads()])


def _restore_kind(saved: SavedKey, steps: tuple[Step, ...]) -> ChangeKind:
    if steps:
        return "now"
    if saved.reboot:
        return "at-boot"
    return "by-file" if family(saved.family).managed_paths else "manual"


def plan_rollback(read: HostRead, snapshot: Snapshot) -> HostPlan:
    """Put every snapshot key back and undo every file, as the snapshot says."""
    if read.readings is None:
        audit = HostAudit(read.host, "unreachable", error=read.error, elapsed_s=read.elapsed_s)
        return HostPlan(read.host, "rollback", audit, error=read.error)
    readings, topology = read.readings, parse_topology(read.readings)
    audit = HostAudit(read.host, "ok", topology=topology, elapsed_s=read.elapsed_s)
    changes: list[Change] = []
    ordered = sorted(
        snapshot.keys.items(), key=lambda item: family(item[1].family).restore_rank(item[0])
    )
    for key, saved in ordered:
        check = check_key(key, saved, readings, topology)
        if check.restored:
            continue
        try:
            steps = family(saved.family).steps_to_set(key, saved.before, readings, topology)
        except UnsafeStepError as error:
            refused = replace(audit, status="refused", error=str(error))
            return HostPlan(read.host, "rollback", refused, error=str(error), existing=snapshot)
        kind = _restore_kind(saved, steps)
        changes.append(
            Change(
                key,
                saved.family,
                check.actual,
                saved.before,
                kind,
                saved.reboot,
                steps,
                reason="" if kind != "manual" else CANNOT_SET,
                field="snapshot",
            )
        )
    files = [
        change
        for path, saved_file in snapshot.files.items()
        for change in _undo_file(path, saved_file, readings)
    ]
    return HostPlan(read.host, "rollback", audit, tuple(changes), tuple(files), existing=snapshot)
