"""oslat's --json output (rt-tests 2.4, tests/data/jitter/oslat-*.json) and the result built
from it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tests.unit.jitter_captures import OSLAT_2S, OSLAT_B1024, capture, local_context, oslat_cpu

from quietcore.probes.oslat import OslatFormatError, oslat_cpu_jitter, parse_oslat_json


def _document(name: str = OSLAT_B1024) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(capture(name))
    return document


def test_the_2s_capture() -> None:
    (thread,) = parse_oslat_json(capture(OSLAT_2S))
    assert thread.cpu == 1
    assert thread.duration_ns == 1_998_000_000
    assert thread.max_ns == 130_000
    assert thread.loops == sum(_document(OSLAT_2S)["thread"]["0"]["histogram"].values())
    assert thread.loops == 97_622_707
    assert list(thread.histogram_us)[:3] == [1, 2, 3]
    assert thread.histogram_us[32] == 45


def test_the_capture_with_1024_buckets() -> None:
    (thread,) = parse_oslat_json(capture(OSLAT_B1024))
    assert (thread.cpu, thread.duration_ns, thread.max_ns) == (1, 2_997_000_000, 4_027_000)
    assert thread.histogram_us[1024] == 2
    assert sorted(thread.histogram_us) == list(thread.histogram_us)


def test_cpu_jitter_keeps_only_the_events() -> None:
    cpu = oslat_cpu(OSLAT_B1024, threshold_ns=5000)
    assert cpu.backend == "oslat"
    assert cpu.events == ()
    assert not cpu.has_timeline
    assert cpu.dropped == 0
    assert cpu.loops == 150_229_444
    assert cpu.loop_ns == pytest.approx(2_997_000_000 / 150_229_444)
    # The 4-5 us bucket is not above 5 us; 7 us is the first bucket that is.
    assert min(cpu.histogram_us) == 7
    assert cpu.context.voluntary_switches is None


def test_a_threshold_between_whole_microseconds() -> None:
    (thread,) = parse_oslat_json(capture(OSLAT_B1024))
    cpu = oslat_cpu_jitter(thread, 12_500, local_context())
    # Bucket 13 (12-13 us) straddles 12.5 us; bucket 14 is the first wholly above.
    assert min(cpu.histogram_us) == 14
    assert cpu.threshold_ns == 12_500


def test_two_threads_in_cpu_order() -> None:
    document = _document()
    second = {**document["thread"]["0"], "cpu": 3}
    document["thread"] = {"1": second, "0": document["thread"]["0"]}
    document["num_threads"] = 2
    assert [thread.cpu for thread in parse_oslat_json(json.dumps(document))] == [1, 3]


def test_stray_colons_in_keys_are_tolerated() -> None:
    # rt-tests writes "cmdline:" and "rt_test_version:"; the same slip on a key we read is
    # forgiven too.
    assert '"cmdline:"' in capture(OSLAT_2S)
    text = capture(OSLAT_2S).replace('"max":', '"max:":')
    (thread,) = parse_oslat_json(text)
    assert thread.max_ns == 130_000


@pytest.mark.parametrize("field", ["cpu", "duration", "max", "histogram"])
def test_a_missing_field_is_named(field: str) -> None:
    document = _document()
    del document["thread"]["0"][field]
    with pytest.raises(OslatFormatError, match=f"thread 0 has no '{field}'"):
        parse_oslat_json(json.dumps(document))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.pop("thread"), "no 'thread' object"),
        (lambda d: d["thread"]["0"].update(cpu="1"), "'cpu' is not a number"),
        (lambda d: d["thread"]["0"].update(max=-1), "'max' is not a number >= 0"),
        (lambda d: d["thread"]["0"].update(max=1.5), "'max' is not an integer"),
        (lambda d: d["thread"]["0"].update(cpu=True), "'cpu' is not a number"),
        (lambda d: d["thread"]["0"]["histogram"].update(x=1), "key 'x' is not a bucket"),
        (lambda d: d["thread"]["0"]["histogram"].update({"0": 1}), "key '0' is not a bucket"),
        (lambda d: d["thread"].update(a={}), "thread keys are not numbers"),
    ],
)
def test_bad_fields(change: Any, message: str) -> None:
    document = _document()
    change(document)
    with pytest.raises(OslatFormatError, match=message):
        parse_oslat_json(json.dumps(document))


def test_not_json() -> None:
    truncated = capture(OSLAT_2S)[:200]
    with pytest.raises(OslatFormatError, match="not JSON"):
        parse_oslat_json(truncated)
