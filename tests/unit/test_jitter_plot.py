"""SVG plots: well-formed, self-contained, and the marks sit where the log axes say."""

from __future__ import annotations

import math
import shutil
import subprocess
import xml.etree.ElementTree as ET
from dataclasses import replace
from pathlib import Path

import pytest
from tests.unit.jitter_samples import C_EVENTS, c_cpu, host, oslat_cpu, quiet_cpu

from quietcore.probes.result import Event
from quietcore.report.jitter_plot import (
    COUNT_FLOOR,
    MESSAGE_HEIGHT,
    histogram_svg,
    plot_files,
    timeline_svg,
)

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{NS}svg"
    return root


def _with_class(root: ET.Element, tag: str, css_class: str) -> list[ET.Element]:
    return [element for element in root.iter(f"{NS}{tag}") if element.get("class") == css_class]


def _texts(root: ET.Element, css_class: str) -> list[str]:
    return [element.text or "" for element in _with_class(root, "text", css_class)]


def _centre(bar: ET.Element) -> float:
    return float(bar.get("x", "")) + float(bar.get("width", "")) / 2


def _assert_self_contained(svg: str) -> None:
    root = _parse(svg)
    tags = {element.tag.removeprefix(NS) for element in root.iter()}
    assert not tags & {"script", "foreignObject", "image", "a", "use"}
    assert "href" not in svg
    assert not any(name.startswith("on") for element in root.iter() for name in element.attrib)


def test_histogram_has_one_bar_per_bucket_and_labelled_axes() -> None:
    cpu = c_cpu()
    svg = histogram_svg(cpu, "lab-1 CPU 1: event durations")
    _assert_self_contained(svg)
    root = _parse(svg)
    assert root.get("viewBox") == "0 0 720 260"
    assert (root.get("width"), root.get("height")) == ("720", "260")
    # 24 events in 13 whole-µs buckets, 7 to 1251.
    assert len(_with_class(root, "rect", "bar")) == len(cpu.histogram_us) == 13
    assert _texts(root, "axis-label") == ["event duration (log scale)", "events (log)"]
    # 6.1 µs .. 1250.4 µs spans the decades 1 µs .. 10 ms.
    assert _texts(root, "tick-label")[:5] == ["1µs", "10µs", "100µs", "1ms", "10ms"]
    assert "threshold 5µs" in _texts(root, "threshold-label")
    assert "24 events above 5µs in 10s" in svg
    assert "p99 992.8µs · max 1.25ms" in svg


def _bars_by_bucket(root: ET.Element) -> dict[str, ET.Element]:
    """Bars by the bucket their tooltip names: ``(15, 16] µs``."""
    bars = _with_class(root, "rect", "bar")
    return {bar.findtext(f"{NS}title", "").split(":")[0]: bar for bar in bars}


def test_histogram_bars_follow_both_log_axes() -> None:
    bars = _bars_by_bucket(_parse(histogram_svg(c_cpu(), "t")))
    # Buckets in ascending order: (6, 7] first, (1250, 1251] last.
    buckets = list(bars)
    assert (buckets[0], buckets[-1]) == ("(6, 7] µs", "(1250, 1251] µs")
    lefts = [float(bar.get("x", "")) for bar in bars.values()]
    assert lefts == sorted(lefts)
    # Counts 1 and 7 on a log axis from 0.5 to 10: heights in the ratio of log(c / 0.5).
    one, seven = (float(bars[bucket].get("height", "")) for bucket in ("(6, 7] µs", "(15, 16] µs"))
    expected = math.log10(7 / COUNT_FLOOR) / math.log10(1 / COUNT_FLOOR)
    assert seven / one == pytest.approx(expected, rel=0.02)
    # The x axis spans 4 decades (1 µs to 10 ms) over 636 px; bars are centred on their bucket
    # even when widened to stay visible.
    distance = _centre(bars["(130, 131] µs"]) - _centre(bars["(6, 7] µs"])
    decades = (math.log10(130 * 131) - math.log10(6 * 7)) / 2
    assert distance == pytest.approx(decades / 4 * 636, abs=0.2)


def test_histogram_of_real_oslat_capture() -> None:
    cpu = oslat_cpu()
    root = _parse(histogram_svg(cpu, "lab-1 CPU 1 (oslat)"))
    # 51 buckets in the capture, 46 of them above the 5 µs threshold.
    assert len(_with_class(root, "rect", "bar")) == 46
    # 267 events in the fullest bucket: the count axis ends at 1k.
    assert _texts(root, "tick-label")[-4:] == ["1", "10", "100", "1k"]


def test_narrow_buckets_still_get_a_visible_bar() -> None:
    root = _parse(histogram_svg(oslat_cpu(), "t"))
    assert min(float(bar.get("width", "")) for bar in _with_class(root, "rect", "bar")) >= 3.0


def test_title_text_is_escaped() -> None:
    svg = histogram_svg(c_cpu(), 'db<1> & "co"')
    root = _parse(svg)
    assert root.findtext(f"{NS}title") == 'db<1> & "co"'
    assert _texts(root, "title") == ['db<1> & "co"']


def test_size_is_a_parameter() -> None:
    root = _parse(timeline_svg(c_cpu(), "t", width=1000, height=400))
    assert root.get("viewBox") == "0 0 1000 400"


def test_histogram_without_events_says_so() -> None:
    root = _parse(histogram_svg(quiet_cpu(2), "t"))
    assert not _with_class(root, "rect", "bar")
    assert _texts(root, "subtitle") == ["no event above 5µs on CPU 2"]


def test_timeline_has_one_dot_per_event_where_it_happened() -> None:
    svg = timeline_svg(c_cpu(), "lab-1 CPU 1: events over time")
    _assert_self_contained(svg)
    root = _parse(svg)
    dots = _with_class(root, "circle", "event")
    assert len(dots) == len(C_EVENTS) == 24
    xs = [float(dot.get("cx", "")) for dot in dots]
    assert xs == sorted(xs)
    # 10 s over 636 px from x=60: the event at 7.4079 s.
    assert xs[18] == pytest.approx(60 + 7.407880321 / 10.000012345 * 636, abs=0.1)
    ys = [float(dot.get("cy", "")) for dot in dots]
    assert min(ys) == ys[18]  # the 1.25 ms stall is the highest dot
    assert _texts(root, "axis-label") == ["time since start (s)", "event duration (log)"]
    # The 10.000012 s run ends at the 10 s tick; y labels follow.
    assert _texts(root, "tick-label")[:7] == ["0", "2", "4", "6", "8", "10", "1µs"]
    assert "threshold 5µs" in _texts(root, "threshold-label")


def test_the_time_axis_ends_on_a_tick() -> None:
    cpu = replace(c_cpu(), duration_ns=4_999_999_889, events=C_EVENTS[:12])
    root = _parse(timeline_svg(cpu, "t"))
    assert _texts(root, "tick-label")[:7] == ["0", "1", "2", "3", "4", "5", "1µs"]


def test_plots_mention_dropped_events() -> None:
    cpu = replace(c_cpu(), dropped=1200)
    assert "1200 more not kept (probe buffer full)" in timeline_svg(cpu, "t")
    assert "bars: the 24 events kept" in histogram_svg(cpu, "t")


def test_timeline_skips_events_without_a_timestamp() -> None:
    cpu = replace(c_cpu(), events=(*C_EVENTS[:3], Event(None, 9_000)))
    assert len(_with_class(_parse(timeline_svg(cpu, "t")), "circle", "event")) == 3


def test_oslat_has_no_timeline() -> None:
    svg = timeline_svg(oslat_cpu(), "lab-1 CPU 1")
    _assert_self_contained(svg)
    root = _parse(svg)
    assert root.get("height") == str(MESSAGE_HEIGHT)
    assert not _with_class(root, "circle", "event")
    assert _texts(root, "subtitle") == [
        "no timeline: the oslat backend records no event timestamps"
    ]


def test_no_timeline_when_no_event_was_kept_or_there_was_none() -> None:
    dropped = replace(c_cpu(), events=(), dropped=24)
    none = quiet_cpu(2)
    assert _texts(_parse(timeline_svg(dropped, "t")), "subtitle") == [
        "no timeline: none of the 24 events was kept (probe buffer full)"
    ]
    assert _texts(_parse(timeline_svg(none, "t")), "subtitle") == ["no event above 5µs on CPU 2"]


def test_a_zero_threshold_still_plots() -> None:
    cpu = replace(c_cpu(), threshold_ns=0)
    assert len(_with_class(_parse(histogram_svg(cpu, "t")), "rect", "bar")) == 13
    assert len(_with_class(_parse(timeline_svg(cpu, "t")), "circle", "event")) == 24


def test_plot_files_are_named_per_host_and_cpu() -> None:
    files = plot_files(host("lab 1/east:22", c_cpu(), quiet_cpu(3)))
    assert sorted(files) == [
        "lab_1_east_22-cpu1-histogram.svg",
        "lab_1_east_22-cpu1-timeline.svg",
        "lab_1_east_22-cpu3-histogram.svg",
        "lab_1_east_22-cpu3-timeline.svg",
    ]
    for svg in files.values():
        _assert_self_contained(svg)
    assert "lab 1/east:22 CPU 1: event durations" in files["lab_1_east_22-cpu1-histogram.svg"]


def test_a_host_that_was_not_probed_has_no_plots() -> None:
    assert plot_files(host("db-7", error="unreachable", error_kind="unreachable")) == {}


def test_a_real_renderer_accepts_the_svg(tmp_path: Path) -> None:
    assert shutil.which("rsvg-convert") is not None, "apt-get install librsvg2-bin (.ci/run does)"
    source = tmp_path / "histogram.svg"
    source.write_text(histogram_svg(c_cpu(), "lab-1 CPU 1"))
    png = tmp_path / "histogram.png"
    subprocess.run(["rsvg-convert", "-o", str(png), str(source)], check=True)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
