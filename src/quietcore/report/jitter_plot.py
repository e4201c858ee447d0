"""Self-contained SVG plots of one CPU's jitter: a histogram and a timeline of its events.

Pure: the SVG text is built here (no plotting library, no script, no external reference), so
it can be written to a file as is or embedded in an HTML report. Durations are plotted on
log10 axes: a 2 ms event and a 6 µs event must both be readable on one plot.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from quietcore.probes.result import CpuJitter, HostJitter
from quietcore.report.jitter_view import span

WIDTH, HEIGHT = 720, 260
MESSAGE_HEIGHT = 64
FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
INK, MUTED, GRID = "#222", "#666", "#e4e4e4"
BAR, DOT, THRESHOLD = "#3b6ea5", "#c0392b", "#d4840f"
MIN_BAR_PX = 3.0
# Bars of single events need a height on a log axis that starts at 1, so counts start below it.
COUNT_FLOOR = 0.5
TIME_TICKS = 6
# A white halo keeps the threshold label readable where it crosses bars or dots.
LABEL_ON_MARKS = {"fill": THRESHOLD, "stroke": "#fff", "stroke_width": "3", "paint_order": "stroke"}


def _px(value: float) -> str:
    return f"{value:.1f}".removesuffix(".0")


def _attributes(attributes: dict[str, str]) -> str:
    """Keyword names as SVG attributes: ``text_anchor`` is ``text-anchor``, ``class_`` ``class``."""
    return "".join(
        f" {name.rstrip('_').replace('_', '-')}={quoteattr(value)}"
        for name, value in attributes.items()
    )


def _text(x: float, y: float, content: str, css_class: str, **attributes: str) -> str:
    extra = _attributes(attributes)
    return f'<text class="{css_class}" x="{_px(x)}" y="{_px(y)}"{extra}>{escape(content)}</text>'


def _line(x1: float, y1: float, x2: float, y2: float, stroke: str, **attributes: str) -> str:
    return (
        f'<line x1="{_px(x1)}" y1="{_px(y1)}" x2="{_px(x2)}" y2="{_px(y2)}" '
        f'stroke="{stroke}"{_attributes(attributes)}/>'
    )


def _document(width: int, height: int, title: str, subtitle: str, body: Iterable[str]) -> str:
    return "\n".join(
        [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'viewBox="0 0 {width} {height}" role="img" font-family={quoteattr(FONT)} '
            f'font-size="12" fill="{INK}">',
            f"<title>{escape(title)}</title>",
            f'<rect width="{width}" height="{height}" fill="#fff"/>',
            _text(12, 18, title, "title", font_size="14", font_weight="bold"),
            _text(12, 35, subtitle, "subtitle", fill=MUTED),
            *body,
            "</svg>",
        ]
    )


def _message(title: str, message: str, width: int) -> str:
    return _document(width, MESSAGE_HEIGHT, title, message, [])


@dataclass(frozen=True)
class _Frame:
    """The plot area inside the margins, in pixels."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def inside(cls, width: int, height: int) -> _Frame:
        return cls(left=60, top=48, right=width - 24, bottom=height - 44)


@dataclass(frozen=True)
class _Axis:
    """Maps values in [low, high] to pixels in [start, end], linearly or on log10."""

    low: float
    high: float
    start: float
    end: float
    log: bool
    minor_ticks: bool = False

    def _position(self, value: float) -> float:
        return math.log10(max(value, self.low)) if self.log else value

    def at(self, value: float) -> float:
        low, high = self._position(self.low), self._position(self.high)
        return self.start + (self._position(value) - low) / (high - low) * (self.end - self.start)

    def ticks(self) -> list[tuple[float, bool]]:
        """(value, major) pairs inside the axis: decades (and 2..9 x decade) or round steps."""
        if not self.log:
            step = _round_step(self.high - self.low)
            count = math.floor((self.high - self.low) / step + 1e-9)
            return [(self.low + index * step, True) for index in range(count + 1)]
        ticks = []
        for exponent in range(
            math.floor(math.log10(self.low)), math.ceil(math.log10(self.high)) + 1
        ):
            for multiple in range(1, 10 if self.minor_ticks else 2):
                value = multiple * 10.0**exponent
                if self.low * (1 - 1e-9) <= value <= self.high * (1 + 1e-9):
                    ticks.append((value, multiple == 1))
        return ticks


def _round_step(extent: float) -> float:
    """The 1, 2 or 5 x 10^n step that cuts ``extent`` into about ``TIME_TICKS`` pieces."""
    raw = extent / TIME_TICKS
    magnitude = 10.0 ** math.floor(math.log10(raw))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)


def _decades(values: Iterable[float]) -> tuple[float, float]:
    """The whole decades around the positive values, at least one decade wide."""
    positive = [value for value in values if value > 0]
    low_exponent = math.floor(math.log10(min(positive)))
    high_exponent = max(math.ceil(math.log10(max(positive))), low_exponent + 1)
    return 10.0**low_exponent, 10.0**high_exponent


def _x_axis(
    axis: _Axis, frame: _Frame, label: str, tick_label: Callable[[float], str]
) -> list[str]:
    parts = []
    for value, major in axis.ticks():
        x = axis.at(value)
        if major:
            parts.append(_line(x, frame.top, x, frame.bottom, GRID))
            parts.append(
                _text(x, frame.bottom + 17, tick_label(value), "tick-label", text_anchor="middle")
            )
        parts.append(_line(x, frame.bottom, x, frame.bottom + (5 if major else 3), INK))
    parts.append(_line(frame.left, frame.bottom, frame.right, frame.bottom, INK))
    middle = (frame.left + frame.right) / 2
    parts.append(_text(middle, frame.bottom + 35, label, "axis-label", text_anchor="middle"))
    return parts


def _y_axis(
    axis: _Axis, frame: _Frame, label: str, tick_label: Callable[[float], str]
) -> list[str]:
    parts = []
    for value, major in axis.ticks():
        y = axis.at(value)
        if major:
            parts.append(_line(frame.left, y, frame.right, y, GRID))
            parts.append(
                _text(frame.left - 8, y + 4, tick_label(value), "tick-label", text_anchor="end")
            )
        parts.append(_line(frame.left - (5 if major else 3), y, frame.left, y, INK))
    parts.append(_line(frame.left, frame.top, frame.left, frame.bottom, INK))
    x, y = 14, (frame.top + frame.bottom) / 2
    parts.append(
        _text(
            x, y, label, "axis-label", text_anchor="middle", transform=f"rotate(-90 {x} {_px(y)})"
        )
    )
    return parts


def _duration_label(us: float) -> str:
    return span(us * 1000)


def _count_label(count: float) -> str:
    for suffix, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if count >= size:
            return f"{count / size:g}{suffix}"
    return f"{count:g}"


def _duration_text(ns: int | None) -> str:
    return "-" if ns is None else span(ns)


def _bucket_low(bucket_us: int) -> float:
    # Bucket k holds (k-1, k] µs; bucket 1 would start at 0, which a log axis cannot show.
    return bucket_us - 1 if bucket_us > 1 else bucket_us / 2


def histogram_svg(cpu: CpuJitter, title: str, *, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Event durations (x, µs, log10) against how many events fell in each bucket (y, log10)."""
    threshold_us = cpu.threshold_ns / 1000
    buckets = sorted((bucket, count) for bucket, count in cpu.histogram_us.items() if count > 0)
    if not buckets:
        return _message(title, f"no event above {span(cpu.threshold_ns)} on CPU {cpu.cpu}", width)
    stats = cpu.stats
    subtitle = (
        f"{stats.count} events above {span(cpu.threshold_ns)} in {span(cpu.duration_ns)}"
        f" · p99 {_duration_text(stats.p99_ns)} · max {_duration_text(stats.max_ns)}"
        f" · {cpu.backend} backend"
    )
    if cpu.dropped:
        subtitle += f" · bars: the {len(cpu.events)} events kept"
    frame = _Frame.inside(width, height)
    low, high = _decades([_bucket_low(buckets[0][0]), buckets[-1][0], threshold_us])
    x_axis = _Axis(low, high, frame.left, frame.right, log=True, minor_ticks=True)
    _, top_count = _decades([1, *(count for _, count in buckets)])
    y_axis = _Axis(COUNT_FLOOR, top_count, frame.bottom, frame.top, log=True)
    parts = [
        *_x_axis(x_axis, frame, "event duration (log scale)", _duration_label),
        *_y_axis(y_axis, frame, "events (log)", _count_label),
        f'<g class="bars" fill="{BAR}">',
    ]
    for bucket, count in buckets:
        left, right = x_axis.at(_bucket_low(bucket)), x_axis.at(bucket)
        if right - left < MIN_BAR_PX:
            left = (left + right - MIN_BAR_PX) / 2
            right = left + MIN_BAR_PX
        top = y_axis.at(count)
        parts.append(
            f'<rect class="bar" x="{_px(left)}" y="{_px(top)}" width="{_px(right - left)}" '
            f'height="{_px(frame.bottom - top)}"><title>'
            f"{escape(f'({_bucket_low(bucket):g}, {bucket}] µs: {count} events')}</title></rect>"
        )
    parts.append("</g>")
    x = x_axis.at(threshold_us)
    parts += [
        _line(x, frame.top, x, frame.bottom, THRESHOLD, stroke_dasharray="4 3", class_="threshold"),
        _text(
            x + 4,
            frame.top + 11,
            f"threshold {span(cpu.threshold_ns)}",
            "threshold-label",
            **LABEL_ON_MARKS,
        ),
    ]
    return _document(width, height, title, subtitle, parts)


def _time_axis_end(cpu: CpuJitter, offsets_s: list[float]) -> float:
    """The run's end rounded up to a tick, so the last tick names the run's length; a run a
    hair longer than asked (10.00001 s) still ends at 10."""
    end = max(cpu.duration_ns / 1e9, *offsets_s) or 1.0
    step = _round_step(end)
    return math.ceil(end / step - 1e-3) * step


def _no_timeline(cpu: CpuJitter) -> str:
    if cpu.stats.count == 0:
        return f"no event above {span(cpu.threshold_ns)} on CPU {cpu.cpu}"
    if cpu.dropped:
        return f"no timeline: none of the {cpu.stats.count} events was kept (probe buffer full)"
    return f"no timeline: the {cpu.backend} backend records no event timestamps"


def timeline_svg(cpu: CpuJitter, title: str, *, width: int = WIDTH, height: int = HEIGHT) -> str:
    """Each event as a dot: when it started (x, s since start) and how long it lasted (y, µs)."""
    timed = [event for event in cpu.events if event.offset_ns is not None]
    if not timed:
        return _message(title, _no_timeline(cpu), width)
    offsets_s = [(event.offset_ns or 0) / 1e9 for event in timed]
    durations_us = [event.duration_ns / 1000 for event in timed]
    threshold_us = cpu.threshold_ns / 1000
    subtitle = f"{len(timed)} events above {span(cpu.threshold_ns)} in {span(cpu.duration_ns)}"
    if cpu.dropped:
        subtitle += f" · {cpu.dropped} more not kept (probe buffer full)"
    frame = _Frame.inside(width, height)
    x_axis = _Axis(0.0, _time_axis_end(cpu, offsets_s), frame.left, frame.right, log=False)
    low, high = _decades([threshold_us, *durations_us])
    y_axis = _Axis(low, high, frame.bottom, frame.top, log=True, minor_ticks=True)
    parts = [
        *_x_axis(x_axis, frame, "time since start (s)", lambda seconds: f"{seconds:g}"),
        *_y_axis(y_axis, frame, "event duration (log)", _duration_label),
    ]
    y = y_axis.at(threshold_us)
    parts += [
        f'<g class="events" fill="{DOT}" fill-opacity="0.65">',
        *(
            f'<circle class="event" cx="{_px(x_axis.at(offset))}" '
            f'cy="{_px(y_axis.at(duration))}" r="2.5"/>'
            for offset, duration in zip(offsets_s, durations_us, strict=True)
        ),
        "</g>",
        _line(frame.left, y, frame.right, y, THRESHOLD, stroke_dasharray="4 3", class_="threshold"),
        _text(
            frame.right,
            y - 4,
            f"threshold {span(cpu.threshold_ns)}",
            "threshold-label",
            text_anchor="end",
            **LABEL_ON_MARKS,
        ),
    ]
    return _document(width, height, title, subtitle, parts)


def _file_stem(host: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", host) or "host"


def plot_files(host: HostJitter) -> dict[str, str]:
    """``<host>-cpu<N>-histogram.svg`` and ``<host>-cpu<N>-timeline.svg`` for every probed CPU."""
    stem = _file_stem(host.host)
    files = {}
    for cpu in sorted(host.cpus, key=lambda cpu: cpu.cpu):
        prefix = f"{stem}-cpu{cpu.cpu}"
        files[f"{prefix}-histogram.svg"] = histogram_svg(
            cpu, f"{host.host} CPU {cpu.cpu}: event durations"
        )
        files[f"{prefix}-timeline.svg"] = timeline_svg(
            cpu, f"{host.host} CPU {cpu.cpu}: events over time"
        )
    return files
