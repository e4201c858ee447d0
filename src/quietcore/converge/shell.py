"""Render converge steps as one POSIX sh script. Pure.

This is the only place converge steps become shell text. Every argument is quoted with
``shlex.quote`` after ``quietcore.steps`` checked it, and the script runs the whole batch in
one round trip: a step that fails is reported on stderr and makes the script exit 1, but does
not stop the steps after it, so one refused IRQ does not leave the others unset.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from quietcore.steps import (
    REFUSED_WRITES,
    BindDriver,
    ConfineTasks,
    ManagedFile,
    PinTasks,
    RemoveCgroup,
    Run,
    Step,
    Write,
)

# The functions every script starts with. ``qc_block`` and ``qc_record`` let a journal line say
# how the steps of its key went: the line is built on the controller in two halves around the
# word ``ok``, ``refused`` (the kernel keeps the value: a managed IRQ) or ``failed``.
PRELUDE = (
    f"REFUSED={REFUSED_WRITES}\n"
    + r"""qc_failed=0
qc_block_failed=0
qc_block_refused=0
qc_fail() { echo "quietcore: $*" >&2; qc_failed=1; qc_block_failed=1; }
qc_block() { qc_block_failed=0; qc_block_refused=0; }
qc_write() { { printf '%s\n' "$2" > "$1"; } 2>/dev/null || qc_fail "could not write '$2' to $1"; }
qc_write_refusable() {
    { printf '%s\n' "$2" > "$1"; } 2>/dev/null && return 0
    echo "quietcore: the kernel refused '$2' for $1: recorded as kernel-owned"
    qc_block_refused=1
    mkdir -p "${REFUSED%/*}" || return 0
    grep -qxF "$1" "$REFUSED" 2>/dev/null || echo "$1" >> "$REFUSED"
}
qc_run() { "$@" || qc_fail "failed (exit $?): $*"; }
qc_systemd() { if [ -d /run/systemd/system ]; then qc_run "$@"; fi; }
qc_put() {
    mkdir -p "${1%/*}" && printf '%s' "$3" > "$1.qc-new" && chmod "$2" "$1.qc-new" &&
        mv -f "$1.qc-new" "$1" || qc_fail "could not write $1"
}
# A directory left empty by the removal goes too (rmdir never removes a non-empty one).
qc_remove() { rm -f "$1" || qc_fail "could not remove $1"; rmdir "${1%/*}" 2>/dev/null || :; }
qc_backup() {
    [ ! -e "$1" ] || [ -e "$2" ] || { mkdir -p "${2%/*}" && cp -p "$1" "$2"; } ||
        qc_fail "could not back up $1"
}
qc_restore() { cp -p "$2" "$1" || qc_fail "could not restore $1 from $2"; }
# Runtime isolation (knobs/cpuset.py). $1 CPUs, $2 the partition to leave alone, $3 the v1
# housekeeping cgroup to join or empty. Tasks the kernel pins refuse; that is not a failure.
# Twice: a process forked by a parent the first pass had not reached yet is not in its list.
qc_confine() {
    for qc_pass in 1 2; do
        for d in /proc/[0-9]*; do
            { read -r qc_cs < "$d/cpuset"; } 2>/dev/null || continue
            case "$qc_cs/" in "$2"/*) ;; *)
                [ -z "$3" ] || { echo "${d#/proc/}" > "$3/cgroup.procs"; } 2>/dev/null
                for t in "$d"/task/[0-9]*; do taskset -pc "$1" "${t##*/}" >/dev/null 2>&1; done
            esac
        done
    done
}
# $1 CPUs, then thread IDs: each gets its affinity back; one that has exited is no failure.
qc_pin() {
    qc_c=$1
    shift
    for t; do
        taskset -pc "$qc_c" "$t" >/dev/null 2>&1 || [ ! -d "/proc/$t" ] ||
            qc_fail "could not give task $t CPUs $qc_c"
    done
}
# $1 a cgroup to remove, $2 the cgroup its processes move to first.
qc_rmcgroup() {
    [ -d "$1" ] || return 0
    while read -r p; do { echo "$p" > "$2/cgroup.procs"; } 2>/dev/null; done < "$1/cgroup.procs"
    rmdir "$1" || qc_fail "could not remove cgroup $1 (tasks left: $(wc -l < "$1/cgroup.procs"))"
}
# PCI driver binding (knobs/vfio.py). $1 address, $2 the driver it must end up with (empty:
# none), $3 1 = bind through driver_override (loading the driver's module first), 0 = clear the
# override and let the kernel's matching pick the driver. Idempotent: no unbind when it holds.
qc_bind() {
    qc_d=/sys/bus/pci/devices/$1
    [ -d "$qc_d" ] || { qc_fail "no PCI device $1"; return; }
    qc_now=$(readlink "$qc_d/driver" 2>/dev/null); qc_now=${qc_now##*/}
    if [ "$3" = 1 ]; then
        [ -d "/sys/bus/pci/drivers/$2" ] || modprobe "$2" || { qc_fail "no driver $2"; return; }
        printf '%s\n' "$2" > "$qc_d/driver_override" ||
            { qc_fail "could not set the driver override of $1"; return; }
    else
        printf '\n' > "$qc_d/driver_override" 2>/dev/null || :
    fi
    if [ "$qc_now" != "$2" ]; then
        [ -z "$qc_now" ] || echo "$1" > "$qc_d/driver/unbind" || qc_fail "could not unbind $1"
        [ -z "$2" ] || echo "$1" > /sys/bus/pci/drivers_probe 2>/dev/null || :
    fi
    qc_now=$(readlink "$qc_d/driver" 2>/dev/null); qc_now=${qc_now##*/}
    [ "$qc_now" = "$2" ] || qc_fail "$1 has driver '${qc_now:-none}', not '${2:-none}'"
}
qc_record() {
    mkdir -p "${1%/*}" || qc_fail "could not create ${1%/*}"
    r=ok
    [ "$qc_block_refused" = 0 ] || r=refused
    [ "$qc_block_failed" = 0 ] || r=failed
    printf '%s%s%s\n' "$2" "$r" "$3" >> "$1" || qc_fail "could not append to $1"
}"""
)
EPILOGUE = 'exit "$qc_failed"'


def quote_all(arguments: Iterable[str]) -> str:
    return " ".join(shlex.quote(argument) for argument in arguments)


def step_line(step: Step) -> str:
    if isinstance(step, Write):
        writer = "qc_write_refusable" if step.refusable else "qc_write"
        return f"{writer} {quote_all((step.path, step.value))}"
    if isinstance(step, ConfineTasks):
        return f"qc_confine {quote_all((step.cpus, step.partition, step.join or ''))}"
    if isinstance(step, PinTasks):
        return f"qc_pin {quote_all((step.cpus, *(str(tid) for tid in step.tids)))}"
    if isinstance(step, RemoveCgroup):
        return f"qc_rmcgroup {quote_all((step.path, step.parent))}"
    if isinstance(step, BindDriver):
        override = "1" if step.override else "0"
        return f"qc_bind {quote_all((step.address, step.driver or '', override))}"
    runner = "qc_systemd" if step.systemd_only else "qc_run"
    return f"{runner} {quote_all(step.argv)}"


def put_line(file: ManagedFile) -> str:
    return f"qc_put {quote_all((file.path, file.mode, file.content))}"


def remove_line(path: str) -> str:
    return f"qc_remove {shlex.quote(path)}"


def backup_line(path: str, backup: str) -> str:
    return f"qc_backup {quote_all((path, backup))}"


def restore_line(path: str, backup: str) -> str:
    return f"qc_restore {quote_all((path, backup))}"


@dataclass(frozen=True)
class JournalLine:
    """A journal record whose result word (``ok``/``failed``) the host fills in."""

    head: str
    tail: str


def record_line(journal: str, line: JournalLine) -> str:
    return f"qc_record {quote_all((journal, line.head, line.tail))}"


def runs_once(runs: Iterable[Run]) -> list[Run]:
    """Activation commands in first-seen order without repeats (two files, one update-grub)."""
    return list(dict.fromkeys(runs))


def script(lines: Sequence[str]) -> str:
    """A complete script: the prelude, ``lines``, and an exit status that reports failures."""
    return "\n".join([PRELUDE, *lines, EPILOGUE]) + "\n"
