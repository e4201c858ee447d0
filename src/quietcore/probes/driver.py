"""The one shell script that runs a probe on a host, and the parser of what it prints.

The script checks the cached probe files, compiles the C probe when the host has to, reads
/proc/interrupts, /proc/softirqs and /proc/stat, starts one probe process per CPU (or one
oslat for all of them) at once, waits, reads the three files again and prints every probe's
output between markers. Pure: the text is built from values checked here (integers, and
paths that passed ``SAFE_HOST_PATH``), every word ``shlex``-quoted.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from quietcore.probes.choose import BackendChoice
from quietcore.probes.env import SAFE_HOST_PATH

MARKER = "@@qcprobe"
PROC_FILES = ("interrupts", "softirqs", "stat")
# oslat's histogram: 1 us buckets up to this many us, longer gaps all land in the last one.
OSLAT_BUCKETS = 1024


class UnsafeProbeError(ValueError):
    """A value about to reach the host's shell did not pass its check."""


@dataclass(frozen=True)
class ProbeJob:
    choice: BackendChoice
    cpus: tuple[int, ...]
    duration_ns: int
    threshold_ns: int
    fifo: int | None = None
    driver_cpu: int | None = None  # a CPU not probed: where oslat keeps its main thread
    # quietcore's runtime partition (cgroup directory, its CPUs): a probe of one of those CPUs
    # joins it first, since nothing outside the partition may run there.
    partition: tuple[str, frozenset[int]] | None = None

    def joins(self, cpu: int) -> str | None:
        """The cgroup directory the probe of ``cpu`` must join, if any."""
        if self.partition is None or cpu not in self.partition[1]:
            return None
        return self.partition[0]


@dataclass(frozen=True)
class DriverOutput:
    """The sections a driver run printed: ``before``/``after`` proc files by name, each
    CPU's probe stdout and exit status, and whatever else went wrong."""

    before: dict[str, str] = field(default_factory=dict)
    after: dict[str, str] = field(default_factory=dict)
    probes: dict[int, tuple[int, str]] = field(default_factory=dict)  # cpu -> (rc, stdout)
    oslat: tuple[int, str] | None = None  # (rc, json text)
    errors: tuple[str, ...] = ()  # stderr of failed probes, setup failures


def _path(path: str) -> str:
    if not SAFE_HOST_PATH.match(path):
        raise UnsafeProbeError(f"refusing path {path!r}")
    return shlex.quote(path)


def _word(word: str) -> str:
    """A compiler flag or a path: flags are plain words, paths must pass ``SAFE_HOST_PATH``."""
    if word.startswith("/"):
        return _path(word)
    if not re.fullmatch(r"-[A-Za-z0-9=_.+-]+", word):
        raise UnsafeProbeError(f"refusing compiler argument {word!r}")
    return word


def _int(value: int, low: int = 0) -> str:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise UnsafeProbeError(f"refusing number {value!r}")
    return str(value)


def _echo(*words: str) -> str:
    return "echo " + shlex.quote(" ".join((MARKER, *words)))


def _setup(job: ProbeJob, sums: Sequence[tuple[str, str]]) -> list[str]:
    lines = []
    for remote, digest in sums:
        # A cached file is named after its hash; a file that does not match it (a broken
        # upload) is removed so the next run uploads it again.
        lines.append(
            f"echo {shlex.quote(digest + '  ' + remote)} | sha256sum -c --status || "
            f"{{ rm -f {_path(remote)}; {_echo('error', 'corrupt cached probe removed:', remote)}; "
            "exit 4; }"
        )
        # Uploads arrive with the SSH user's umask: make them the user's own, executable.
        lines.append(f"chmod 700 {_path(remote)}")
    choice = job.choice
    if choice.compile_argv is not None and choice.compiled is not None:
        # The compiler writes next to the target and the result is renamed into place, so a
        # failed or interrupted build never leaves a half-written probe under the final name.
        argv = " ".join(_word(word) for word in choice.compile_argv)
        target, part = _path(choice.compiled), _path(choice.compiled + ".part")
        failed = _echo("error", "compiling the C probe failed:")
        lines.append(
            f'[ -x {target} ] || {{ {argv} 2>"$dir/cc.err" && mv -f {part} {target}; }} '
            f'|| {{ {failed}; cat "$dir/cc.err"; exit 4; }}'
        )
    return lines


def _probe_lines(job: ProbeJob) -> list[str]:
    argv = " ".join(_path(word) for word in job.choice.argv)
    lines = []
    for cpu in job.cpus:
        flags = [
            "--cpu", _int(cpu),
            "--duration-ns", _int(job.duration_ns, 1),
            "--threshold-ns", _int(job.threshold_ns, 1),
        ]  # fmt: skip
        if job.fifo is not None:
            flags += ["--fifo", _int(job.fifo, 1)]
        out = f'"$dir/{cpu}"'
        command = f"{_joined(job.joins(cpu))}{argv} {' '.join(flags)}"
        lines.append(f"( {command} >{out}.out 2>{out}.err; echo $? >{out}.rc ) &")
    lines.append("wait")
    for cpu in job.cpus:
        out = f'"$dir/{cpu}"'
        lines += [
            f'{_echo("probe", str(cpu))} "$(cat {out}.rc)"',
            f"cat {out}.out",
            f"{_echo('stderr', str(cpu))}; cat {out}.err",
        ]
    return lines


# A new shell joins the cgroup ($1) with its own PID, then becomes the probe: the probe is the
# only process that moves (the driver stays where it is, off the probed CPUs).
_JOIN = """sh -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' qc-join"""


def _joined(cgroup: str | None) -> str:
    return "" if cgroup is None else f"{_JOIN} {_path(cgroup)} "


def _oslat_lines(job: ProbeJob) -> list[str]:
    seconds = max(1, math.ceil(job.duration_ns / 1e9))  # oslat takes whole seconds
    words = [
        _path(job.choice.argv[0]),
        "--cpu-list", ",".join(_int(cpu) for cpu in job.cpus),
        "--duration", _int(seconds, 1),
        "--bucket-size", str(OSLAT_BUCKETS),
        "--zero-omit", "--quiet",
        '--json="$dir/oslat.json"',
    ]  # fmt: skip
    # oslat is one process: inside the partition its main thread (asleep while the workers
    # measure) must stay there too.
    cgroup = job.joins(job.cpus[0]) if job.cpus else None
    main = job.cpus[0] if cgroup is not None else job.driver_cpu
    if main is not None:
        words += ["--cpu-main-thread", _int(main)]
    if job.fifo is not None:
        words += ["--rtprio", _int(job.fifo, 1)]
    return [
        f'{_joined(cgroup)}{" ".join(words)} >"$dir/oslat.log" 2>&1; rc=$?',
        f'{_echo("oslat")} "$rc"',
        'cat "$dir/oslat.json" 2>/dev/null',
        f'{_echo("stderr", "oslat")}; cat "$dir/oslat.log"',
    ]


def _snapshot(when: str) -> list[str]:
    lines = []
    for name in PROC_FILES:
        lines += [_echo(when, name), f"cat /proc/{name}"]
    return lines


def driver_script(job: ProbeJob, sums: Sequence[tuple[str, str]] = ()) -> str:
    """The script for one host. ``sums``: (remote path, sha256) of cached files to check."""
    run = _oslat_lines(job) if job.choice.backend == "oslat" else _probe_lines(job)
    lines = [
        "export LC_ALL=C",
        "dir=$(mktemp -d) || exit 4",
        "trap 'rm -rf \"$dir\"' EXIT",
        *_setup(job, sums),
        *_snapshot("before"),
        *run,
        *_snapshot("after"),
        _echo("end"),
    ]
    return "\n".join(lines) + "\n"


class DriverFormatError(ValueError):
    """The driver's answer does not follow its protocol (truncated, or the script failed)."""


def parse_driver_output(text: str) -> DriverOutput:
    before: dict[str, list[str]] = {}
    after: dict[str, list[str]] = {}
    probes: dict[int, tuple[int, list[str]]] = {}
    oslat: tuple[int, list[str]] | None = None
    errors: list[str] = []
    current: list[str] | None = None
    finished = False
    for line in text.splitlines():
        if not line.startswith(MARKER + " "):
            if current is None:
                raise DriverFormatError(f"output before the first marker: {line!r}")
            current.append(line)
            continue
        words = line.split()[1:]
        match words:
            case ["before" | "after" as when, name] if name in PROC_FILES:
                current = (before if when == "before" else after).setdefault(name, [])
            case ["probe", cpu, rc] if cpu.isdigit() and rc.lstrip("-").isdigit():
                current = []
                probes[int(cpu)] = (int(rc), current)
            case ["oslat", rc] if rc.lstrip("-").isdigit():
                current = []
                oslat = (int(rc), current)
            case ["stderr", _]:
                current = errors
            case ["error", *message]:
                errors.append(" ".join(message))
                current = errors
            case ["end"]:
                finished = True
                break
            case _:
                raise DriverFormatError(f"unexpected marker line {line!r}")
    if not finished:
        detail = "; ".join(error for error in errors if error) or "no end marker"
        raise DriverFormatError(f"the probe run did not finish: {detail}")
    return DriverOutput(
        before={name: "\n".join(lines) for name, lines in before.items()},
        after={name: "\n".join(lines) for name, lines in after.items()},
        probes={cpu: (rc, "\n".join(lines)) for cpu, (rc, lines) in probes.items()},
        oslat=None if oslat is None else (oslat[0], "\n".join(oslat[1])),
        errors=tuple(line for line in errors if line.strip()),
    )
