"""Event durations as an HdrHistogram interval log (``.hlog``), for HdrHistogram's
HistogramLogProcessor, HdrHistogram_py's HistogramLogReader and the plotters built on them.

One interval per host and CPU, tagged ``HOST/cpuN``, all starting at the log's base time and
lasting that CPU's run. Values are event durations in nanoseconds: quietcore's own unit, and
the one HdrHistogram's tools assume by default (HistogramLogProcessor divides values by 1e6 to
print milliseconds; the ``Interval_Max`` column is written in milliseconds likewise, as the
Java writer does by default). Each histogram is the V2 compressed encoding (ZigZag LEB128
counts with zero runs, zlib, base64) with 3 significant digits, tracking 1 ns to an hour.
"""

from __future__ import annotations

import base64
import re
import struct
import zlib
from collections.abc import Sequence
from datetime import datetime
from typing import Final

from quietcore.probes.result import HostJitter
from quietcore.probes.stats import NS_PER_S, Distribution, event_distribution

LOG_FORMAT_VERSION = "1.3"
SIGNIFICANT_DIGITS: Final = 3
LOWEST_DISCERNIBLE_NS = 1
HIGHEST_TRACKABLE_NS = 3600 * NS_PER_S
MAX_VALUE_UNIT_RATIO = 1e6  # ns -> ms for Interval_Max

_ENCODING_COOKIE = 0x1C849303 | 0x10  # V2; the word-size nibble 1 marks ZigZag LEB128
_COMPRESSED_COOKIE = 0x1C849304 | 0x10
# Values below 2 ** _SUB_BUCKET_MAGNITUDE (2048) each have their own count; every power-of-two
# range above is split in half that many slots, which keeps 3 significant digits.
_SUB_BUCKET_MAGNITUDE = (2 * 10**SIGNIFICANT_DIGITS - 1).bit_length()
_SUB_BUCKET_HALF_COUNT = 1 << (_SUB_BUCKET_MAGNITUDE - 1)
_LEB128_MAX_BYTES = 9
_TAG_DELIMITERS = re.compile(r"[,\s]")


def counts_index(value: int) -> int:
    """The slot of HdrHistogram's counts array that ``value`` is counted in (for a lowest
    discernible value of 1)."""
    bucket = max(value.bit_length() - _SUB_BUCKET_MAGNITUDE, 0)
    return bucket * _SUB_BUCKET_HALF_COUNT + (value >> bucket)


def _zigzag_leb128(value: int) -> bytes:
    unsigned = value * 2 if value >= 0 else -value * 2 - 1
    encoded = bytearray()
    for _ in range(_LEB128_MAX_BYTES - 1):
        if unsigned < 0x80:
            encoded.append(unsigned)
            return bytes(encoded)
        encoded.append(unsigned & 0x7F | 0x80)
        unsigned >>= 7
    encoded.append(unsigned)  # the ninth byte carries its 8 bits whole
    return bytes(encoded)


def _encoded_counts(durations: Distribution) -> bytes:
    """Counts from slot 0 up to the largest value's; a run of n > 1 empty slots is -n."""
    slots: dict[int, int] = {}
    for value, count in durations:
        slot = counts_index(value)
        slots[slot] = slots.get(slot, 0) + count
    encoded = bytearray()
    next_slot = 0
    for slot, count in sorted(slots.items()):
        empty = slot - next_slot
        if empty:
            encoded += _zigzag_leb128(-empty if empty > 1 else 0)
        encoded += _zigzag_leb128(count)
        next_slot = slot + 1
    return bytes(encoded)


def encode_histogram(durations: Distribution) -> str:
    """The base64 V2 compressed encoding of a histogram of these (value, count) pairs."""
    highest = max([HIGHEST_TRACKABLE_NS, *(value for value, _ in durations)])
    counts = _encoded_counts(durations)
    payload = struct.pack(
        ">iiiiqqd",
        _ENCODING_COOKIE,
        len(counts),
        0,  # normalizing index offset
        SIGNIFICANT_DIGITS,
        LOWEST_DISCERNIBLE_NS,
        highest,
        1.0,  # integer to double conversion ratio
    )
    compressed = zlib.compress(payload + counts)
    blob = struct.pack(">ii", _COMPRESSED_COOKIE, len(compressed)) + compressed
    return base64.b64encode(blob).decode("ascii")


def interval_tag(host: str, cpu: int) -> str:
    # HdrHistogram's tags cannot hold commas, spaces or line breaks.
    return _TAG_DELIMITERS.sub("_", f"{host}/cpu{cpu}")


def hdr_log(hosts: Sequence[HostJitter], started_at: datetime) -> str:
    """The log of every measured CPU of ``hosts``; ``started_at`` is the log's start and base
    time (an aware datetime)."""
    epoch_s = started_at.timestamp()
    lines = [
        "#[quietcore jitter: durations of the gaps above each CPU's threshold, in ns]",
        f"#[Histogram log format version {LOG_FORMAT_VERSION}]",
        f"#[StartTime: {epoch_s:.3f} (seconds since epoch), {started_at.isoformat()}]",
        f"#[BaseTime: {epoch_s:.3f} (seconds since epoch)]",
        '"StartTimestamp","Interval_Length","Interval_Max","Interval_Compressed_Histogram"',
    ]
    for host in hosts:
        for cpu in host.cpus:
            durations = event_distribution(cpu)
            if cpu.dropped:
                lines.append(
                    f"#[{interval_tag(host.host, cpu.cpu)}: {cpu.dropped} of "
                    f"{cpu.stats.count} events were not kept by the probe and are missing]"
                )
            longest_ns = durations[-1][0] if durations else 0
            lines.append(
                f"Tag={interval_tag(host.host, cpu.cpu)},0.000,{cpu.duration_ns / NS_PER_S:.3f},"
                f"{longest_ns / MAX_VALUE_UNIT_RATIO:.3f},{encode_histogram(durations)}"
            )
    return "\n".join(lines) + "\n"
