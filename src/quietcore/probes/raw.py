"""Parse what the C and Python probes print for one CPU (the ``qc-probe 1`` protocol).

Strict on purpose: the output crosses an SSH session and a truncated or garbled run must be
reported as such, not turned into plausible-looking numbers. The ``end`` line and the count of
``e`` lines (``events - dropped``) catch truncation anywhere in the output.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from quietcore.probes.result import Backend, Event

HEADER = "qc-probe 1"
PROBE_BACKENDS: dict[str, Backend] = {"c": "c", "python": "python"}
_NUMBER = re.compile(r"[0-9]+")

# Fields with an integer value, and whether the probe must print them.
INT_FIELDS = {
    "cpu": True,
    "tsc_khz": False,
    "threshold_ns": True,
    "duration_ns": True,
    "loops": True,
    "events": True,
    "interrupted_ns": True,
    "max_ns": True,
    "dropped": True,
    "nvcsw": False,
    "nivcsw": False,
}
# Fields with a word value -> the values a probe prints.
WORD_FIELDS = {
    "backend": re.compile(r"c|python"),
    "clock": re.compile(r"tsc|monotonic|perf_counter"),
    "policy": re.compile(r"other|fifo:[0-9]+"),
}


@dataclass(frozen=True)
class RawCpuRun:
    backend: Backend
    cpu: int
    clock: str
    tsc_khz: int | None
    policy: str  # "other" or "fifo:N"
    threshold_ns: int
    duration_ns: int
    loops: int
    events_total: int
    interrupted_ns: int
    max_ns: int
    dropped: int
    voluntary_switches: int | None
    involuntary_switches: int | None
    events: tuple[Event, ...]  # kept events, in order


class RawFormatError(ValueError):
    """The probe output is not (complete) ``qc-probe 1`` output."""


def _number(text: str, where: str) -> int:
    if not _NUMBER.fullmatch(text):
        raise RawFormatError(f"{where}: {text!r} is not a non-negative integer")
    return int(text)


@dataclass
class _Reading:
    """The output read so far: header fields by name and the kept events."""

    ints: dict[str, int]
    words: dict[str, str]
    events: list[Event]
    ended: bool = False


def _read_line(reading: _Reading, line: str, number: int) -> None:
    where = f"line {number}"
    parts = line.split()
    if reading.ended:
        raise RawFormatError(f"{where}: {line!r} after 'end'")
    if parts == ["end"]:
        reading.ended = True
    elif len(parts) == 3 and parts[0] == "e":
        offset, duration = (_number(part, where) for part in parts[1:])
        reading.events.append(Event(offset, duration))
    elif len(parts) == 2 and parts[0] in INT_FIELDS.keys() | WORD_FIELDS:
        name, value = parts
        if name in reading.ints or name in reading.words:
            raise RawFormatError(f"{where}: {name} given twice")
        if name in INT_FIELDS:
            reading.ints[name] = _number(value, where)
        elif WORD_FIELDS[name].fullmatch(value):
            reading.words[name] = value
        else:
            raise RawFormatError(f"{where}: unexpected {name} {value!r}")
    else:
        raise RawFormatError(f"{where}: unknown line {line!r}")


def _check_complete(reading: _Reading) -> None:
    if not reading.ended:
        raise RawFormatError("no 'end' line: the output is truncated")
    missing = [name for name in WORD_FIELDS if name not in reading.words] + [
        name for name, required in INT_FIELDS.items() if required and name not in reading.ints
    ]
    if missing:
        raise RawFormatError(f"missing field {missing[0]!r}")
    if reading.words.get("clock") == "tsc" and "tsc_khz" not in reading.ints:
        raise RawFormatError("missing field 'tsc_khz' (clock tsc)")
    kept = reading.ints["events"] - reading.ints["dropped"]
    if kept != len(reading.events):
        raise RawFormatError(
            f"{len(reading.events)} event lines, but events - dropped = {kept}: output damaged"
        )


def parse_raw(text: str) -> RawCpuRun:
    """One CPU's probe output -> ``RawCpuRun``; ``RawFormatError`` naming the problem."""
    lines = text.splitlines()
    if not lines or lines[0] != HEADER:
        first = lines[0] if lines else ""
        raise RawFormatError(f"line 1: expected {HEADER!r}, got {first!r}")
    reading = _Reading({}, {}, [])
    for number, line in enumerate(lines[1:], start=2):
        _read_line(reading, line, number)
    _check_complete(reading)
    ints, words = reading.ints, reading.words
    return RawCpuRun(
        backend=PROBE_BACKENDS[words["backend"]],
        cpu=ints["cpu"],
        clock=words["clock"],
        tsc_khz=ints.get("tsc_khz"),
        policy=words["policy"],
        threshold_ns=ints["threshold_ns"],
        duration_ns=ints["duration_ns"],
        loops=ints["loops"],
        events_total=ints["events"],
        interrupted_ns=ints["interrupted_ns"],
        max_ns=ints["max_ns"],
        dropped=ints["dropped"],
        voluntary_switches=ints.get("nvcsw"),
        involuntary_switches=ints.get("nivcsw"),
        events=tuple(reading.events),
    )
