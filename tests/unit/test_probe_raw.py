"""parse_raw on real output of the C and Python probes (tests/data/jitter/README.md), and on
that output damaged the ways an SSH session or a dying probe damages it."""

from __future__ import annotations

from pathlib import Path

import pytest

from quietcore.probes.raw import RawFormatError, parse_raw
from quietcore.probes.result import Event

DATA = Path(__file__).parent.parent / "data" / "jitter"
C_CAPTURE = (DATA / "raw-c-local-cpu1.txt").read_text()
PYTHON_CAPTURE = (DATA / "raw-python-local-cpu1.txt").read_text()


def _lines(text: str) -> list[str]:
    return text.splitlines()


def _field(text: str, name: str) -> int:
    [value] = [line.split()[1] for line in _lines(text) if line.startswith(name + " ")]
    return int(value)


def _replaced(text: str, name: str, value: str) -> str:
    return "\n".join(
        f"{name} {value}" if line.startswith(name + " ") else line for line in _lines(text)
    )


def _without(text: str, name: str) -> str:
    return "\n".join(line for line in _lines(text) if not line.startswith(name + " "))


def test_c_capture() -> None:
    run = parse_raw(C_CAPTURE)
    assert (run.backend, run.cpu, run.clock, run.policy) == ("c", 1, "tsc", "other")
    assert run.tsc_khz == _field(C_CAPTURE, "tsc_khz")
    assert run.threshold_ns == 5000
    assert run.duration_ns == _field(C_CAPTURE, "duration_ns")
    assert run.loops == _field(C_CAPTURE, "loops")
    assert run.voluntary_switches == _field(C_CAPTURE, "nvcsw")
    assert run.involuntary_switches == _field(C_CAPTURE, "nivcsw")
    event_lines = [line.split() for line in _lines(C_CAPTURE) if line.startswith("e ")]
    assert run.events == tuple(Event(int(offset), int(length)) for _, offset, length in event_lines)
    assert run.events_total == len(run.events) and run.dropped == 0
    assert run.max_ns == max(event.duration_ns for event in run.events)
    # The probe converts TSC ticks to ns at the end: the sum is converted once, each event on
    # its own, so they may differ by rounding (under 1 ns per event).
    total = sum(event.duration_ns for event in run.events)
    assert abs(run.interrupted_ns - total) <= len(run.events)


def test_python_capture() -> None:
    run = parse_raw(PYTHON_CAPTURE)
    assert (run.backend, run.clock, run.tsc_khz) == ("python", "perf_counter", None)
    assert run.events_total == len(run.events) == _field(PYTHON_CAPTURE, "events")
    assert run.interrupted_ns == sum(event.duration_ns for event in run.events)
    offsets = [event.offset_ns or 0 for event in run.events]
    assert 0 not in offsets and offsets == sorted(offsets)


def test_dropped_events_are_counted_not_listed() -> None:
    """A full buffer: the probe keeps the first events and says how many it did not."""
    kept = 5
    lines = _lines(C_CAPTURE)
    first_event = next(i for i, line in enumerate(lines) if line.startswith("e "))
    total = _field(C_CAPTURE, "events")
    text = "\n".join([*lines[: first_event + kept], "end"])
    run = parse_raw(_replaced(text, "dropped", str(total - kept)))
    assert run.events_total == total and run.dropped == total - kept
    assert run.events == parse_raw(C_CAPTURE).events[:kept]


@pytest.mark.parametrize("capture", [C_CAPTURE, PYTHON_CAPTURE], ids=["c", "python"])
@pytest.mark.parametrize("cut", [1, 2, 10, -1])
def test_truncated_output(capture: str, cut: int) -> None:
    """Cut after ``cut`` lines (or just before ``end``): an interrupted transfer."""
    text = "\n".join(_lines(capture)[:cut])
    with pytest.raises(RawFormatError, match="no 'end' line"):
        parse_raw(text)


def test_event_lines_lost_in_the_middle() -> None:
    lines = _lines(C_CAPTURE)
    first_event = next(i for i, line in enumerate(lines) if line.startswith("e "))
    del lines[first_event + 3]
    with pytest.raises(RawFormatError, match="event lines, but events - dropped"):
        parse_raw("\n".join(lines))


def test_garbage_line_is_named_by_number() -> None:
    lines = _lines(C_CAPTURE)
    lines.insert(6, "Warning: Permanently added 'host' to the list of known hosts.")
    with pytest.raises(RawFormatError, match=r"line 7: unknown line \"Warning: Permanently"):
        parse_raw("\n".join(lines))


@pytest.mark.parametrize(
    "line",
    ["e 12 -5", "e 12", "e 12 3 4", "loops 1.5e9", "loops -3", "loops", "cpu 1 2", ""],
)
def test_malformed_lines(line: str) -> None:
    lines = _lines(PYTHON_CAPTURE)
    lines.insert(3, line)
    with pytest.raises(RawFormatError, match="line 4: "):
        parse_raw("\n".join(lines))


@pytest.mark.parametrize(
    ("name", "value"),
    [("backend", "oslat"), ("clock", "rdtscp"), ("policy", "rr:5"), ("policy", "fifo:")],
)
def test_unexpected_words(name: str, value: str) -> None:
    with pytest.raises(RawFormatError, match=f"unexpected {name} '{value}'"):
        parse_raw(_replaced(C_CAPTURE, name, value))


@pytest.mark.parametrize(
    "name", ["backend", "cpu", "clock", "policy", "duration_ns", "loops", "events", "dropped"]
)
def test_missing_field_is_named(name: str) -> None:
    with pytest.raises(RawFormatError, match=f"missing field '{name}'"):
        parse_raw(_without(C_CAPTURE, name))


def test_tsc_clock_needs_its_frequency() -> None:
    with pytest.raises(RawFormatError, match="missing field 'tsc_khz'"):
        parse_raw(_without(C_CAPTURE, "tsc_khz"))


def test_switch_counts_are_optional() -> None:
    run = parse_raw(_without(_without(PYTHON_CAPTURE, "nvcsw"), "nivcsw"))
    assert run.voluntary_switches is None and run.involuntary_switches is None


def test_field_given_twice() -> None:
    lines = _lines(C_CAPTURE)
    lines.insert(2, "cpu 0")  # before the real "cpu 1", which becomes line 4
    with pytest.raises(RawFormatError, match="line 4: cpu given twice"):
        parse_raw("\n".join(lines))


@pytest.mark.parametrize("first", ["", "qc-probe 2", "error cannot pin to CPU 7"])
def test_header_is_required(first: str) -> None:
    text = "\n".join([first, *_lines(C_CAPTURE)[1:]])
    with pytest.raises(RawFormatError, match="line 1: expected 'qc-probe 1'"):
        parse_raw(text)


def test_nothing_after_end() -> None:
    """Two CPUs' outputs run together are not one CPU's output."""
    with pytest.raises(RawFormatError, match="after 'end'"):
        parse_raw(C_CAPTURE + PYTHON_CAPTURE)
