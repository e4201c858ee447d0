"""The pyinfra operations that carry a plan out, and the one function that queues them.

Each knob family gets its own operation (``operation_for``), made once from the registry:
what it runs is the family's own steps and files, rendered by ``shell`` into one script, so a
family costs one round trip whatever the number of its keys. quietcore's CLI adds these
operations through pyinfra's Python API and ``deploys/tune.py`` calls them from the pyinfra
CLI: both go through ``queue_plan``, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from pathlib import Path
from typing import Any

from pyinfra.api.command import FunctionCommand, QuoteString, StringCommand
from pyinfra.api.operation import operation
from pyinfra.context import host

from quietcore.converge import journal, paths
from quietcore.converge.boot import FAMILY as BOOT_FAMILY
from quietcore.converge.plan import Change, FileChange, HostPlan, content_digest
from quietcore.converge.shell import (
    backup_line,
    put_line,
    record_line,
    remove_line,
    restore_line,
    runs_once,
    script,
    step_line,
)
from quietcore.converge.snapshot import to_json
from quietcore.facts import HostBundle
from quietcore.knobs.registry import FAMILIES
from quietcore.readings import Readings
from quietcore.steps import REFUSED_WRITES, ManagedFile, Run

# Adds one operation for the host being planned: a direct call inside a pyinfra deploy, or
# ``add_op(state, op, ..., host=[host])`` through the Python API.
AddOperation = Callable[..., Any]

log = logging.getLogger(__name__)
CLEANUP = (Run(("rm", "-rf", paths.BACKUP_DIR)),)


def _run_script(label: str, lines: tuple[str, ...]) -> Generator[StringCommand]:
    if not lines:
        host.noop(f"{label}: nothing to change")
        return
    yield StringCommand("sh", "-c", QuoteString(script(lines)))


@functools.cache
def operation_for(family_name: str) -> Any:
    """The pyinfra operation of one family (or of ``boot``, the boot script and unit)."""
    module = next(
        (type(knob).__module__ for knob in FAMILIES if knob.name == family_name),
        "quietcore.converge.boot",
    )

    def converge(lines: tuple[str, ...] = ()) -> Generator[StringCommand]:
        yield from _run_script(family_name, lines)

    converge.__module__ = module
    converge.__doc__ = f"Converge the {family_name} settings: rendered steps, files, journal."
    return operation()(converge)


@operation()
def state_files(lines: tuple[str, ...] = ()) -> Generator[StringCommand]:
    """Write or remove quietcore's own state on the host: snapshot, backups, cleanup."""
    yield from _run_script("state", lines)


def _mirror(state: Any, host: Any) -> None:
    """Copy the host's snapshot and journal to the controller (``paths.controller_host_dir``)."""
    readings: Readings = host.get_fact(
        HostBundle, files=(paths.SNAPSHOT, paths.JOURNAL), commands=()
    )
    mirror_to_controller(host.name, readings)


def mirror_to_controller(host_name: str, readings: Readings) -> Path:
    directory = paths.controller_host_dir(host_name)
    directory.mkdir(parents=True, exist_ok=True)
    journal_lines = readings.lines(paths.JOURNAL) or ()
    (directory / "journal.jsonl").write_text("".join(f"{line}\n" for line in journal_lines))
    snapshot = readings.text(paths.SNAPSHOT)
    kept = directory / "snapshot.json"
    if snapshot is not None:
        kept.write_text(snapshot + "\n")
    elif kept.exists():
        # Rolled back: the host forgot it; the controller keeps it as a record.
        kept.rename(directory / f"snapshot.rolled-back-{journal.now_utc()}.json")
    return directory


@operation()
def mirror() -> Generator[FunctionCommand]:
    """Keep the controller's copy of the host's snapshot and journal."""
    yield FunctionCommand(_mirror, (), {})


BOOT_ID = "cat /proc/sys/kernel/random/boot_id"


_UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _boot_id(host: Any) -> str | None:
    """The host's boot id, or ``None``: a host shutting down can still run a command and
    print nothing, which must not pass for a new boot."""
    done, output = host.run_shell_command(BOOT_ID)
    text = output.stdout.strip() if done else ""
    return text if _UUID.match(text) else None


def _remember_boot(state: Any, host: Any, before: list[str]) -> None:
    boot_id = _boot_id(host)
    if boot_id is None:
        raise RuntimeError(f"{host.name}: cannot read its boot id, so a reboot could not be told")
    before.append(boot_id)


def _wait_for_new_boot(state: Any, host: Any, before: list[str], timeout: int) -> None:
    """Reconnect until the host answers with another boot id. (pyinfra's ``server.reboot``
    compares uptimes, which never settles when the host had only just booted before.)"""
    deadline = time.monotonic() + timeout
    time.sleep(5)
    while time.monotonic() < deadline:
        host.disconnect()
        host.connect(show_errors=False)
        if host.connected and _boot_id(host) not in (None, *before):
            log.info("%s: back with a new boot id", host.name)
            return
        time.sleep(3)
    raise TimeoutError(f"{host.name} did not come back with a new boot id in {timeout} s")


@operation()
def reboot_and_wait(timeout: int = 900) -> Generator[Any]:
    """Reboot the host and wait until it answers SSH again with a new boot id."""
    before: list[str] = []
    yield FunctionCommand(_remember_boot, (before,), {})
    yield StringCommand("( sleep 1 && reboot ) </dev/null >/dev/null 2>&1 &")
    yield FunctionCommand(_wait_for_new_boot, (before, timeout), {})


# --- Rendering a plan into per-family scripts -------------------------------------------------


def _file_lines(change: FileChange, context: journal.Context) -> list[str]:
    if change.file is not None:
        action, after = put_line(change.file), content_digest(change.file.content)
    elif change.action == "restore":
        action, after = restore_line(change.path, paths.backup_path(change.path)), "original"
    else:
        action, after = remove_line(change.path), None
    record = journal.entry(context, f"file:{change.path}", change.before, after, change.reboot)
    return ["qc_block", action, record_line(paths.JOURNAL, record)]


def _change_lines(change: Change, context: journal.Context) -> list[str]:
    record = journal.entry(context, change.key, change.before, change.after, change.reboot)
    steps = [step_line(step) for step in change.steps]
    return ["qc_block", *steps, record_line(paths.JOURNAL, record)]


def family_lines(
    changes: Sequence[Change], files: Sequence[FileChange], context: journal.Context
) -> tuple[str, ...]:
    """One family's script body: files, then what makes them take effect, then the keys."""
    lines = [line for change in files for line in _file_lines(change, context)]
    lines += [step_line(run) for run in runs_once(r for f in files for r in f.activate)]
    lines += [line for change in changes for line in _change_lines(change, context)]
    return tuple(lines)


def _snapshot_lines(plan: HostPlan) -> tuple[str, ...]:
    lines = [
        backup_line(change.path, paths.backup_path(change.path))
        for change in plan.files
        if change.existed
    ]
    if plan.snapshot is not None:
        file = ManagedFile(paths.SNAPSHOT, to_json(plan.snapshot), "state", mode="0600")
        lines.append(put_line(file))
    return tuple(lines)


def _families() -> Iterable[str]:
    return [*(knob.name for knob in FAMILIES), BOOT_FAMILY]


def queue_plan(
    plan: HostPlan,
    add: AddOperation,
    context: journal.Context,
    *,
    reboot: bool,
    reboot_timeout: int = 600,
) -> bool:
    """Add the operations that carry ``plan`` out on its host; ``True`` if any was added.

    Order: the snapshot and backups before anything changes; one operation per family; for a
    rollback, quietcore's own state last; the controller's copy; the reboot if allowed and
    needed.
    """
    if plan.action_count == 0 and not (reboot and plan.needs_reboot):
        return False
    snapshot = _snapshot_lines(plan)
    if snapshot:
        add(state_files, lines=snapshot, name="quietcore: snapshot before the first change")
    for name in _families():
        changes = [change for change in plan.now if change.family == name]
        files = [change for change in plan.files if change.family == name]
        if changes or files:
            label = f"quietcore {plan.kind} {name}: {len(changes)} keys, {len(files)} files"
            add(operation_for(name), lines=family_lines(changes, files, context), name=label)
    if plan.kind == "rollback":
        cleanup = (
            remove_line(paths.SNAPSHOT),
            remove_line(REFUSED_WRITES),
            *(step_line(run) for run in CLEANUP),
        )
        add(state_files, lines=cleanup, name="quietcore: remove the snapshot and backups")
    add(mirror, name="quietcore: copy the snapshot and journal to the controller")
    if reboot and plan.needs_reboot:
        record = journal.entry(context, "host/reboot", None, "reboot", True)
        lines = ("qc_block", record_line(paths.JOURNAL, record))
        add(state_files, lines=lines, name="quietcore: journal the reboot")
        add(
            reboot_and_wait,
            timeout=reboot_timeout,
            name="quietcore: reboot and wait for a new boot id",
        )
    return True
