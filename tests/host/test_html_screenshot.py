"""The HTML report as a browser paints it: headless Chromium (Debian's) screenshots real
reports, and the picture must show the summary's status tiles at the top and, with jitter,
the inline plots. Nothing is fetched: Chromium runs with networking features off and the page
has nothing to fetch."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import zlib
from collections import Counter
from pathlib import Path

import pytest

from quietcore.report.html import PALETTE, html_report
from quietcore.report.jitter_plot import BAR

pytestmark = pytest.mark.host

DATA = Path(__file__).parents[1] / "data" / "reports"
WIDTH = 1280
SUMMARY_ROWS = 400  # the summary's tiles sit in the first 400 pixels of the page
PAGE_BACKGROUND = "#eef1f4"
Rgb = bytes  # 3 bytes: red, green, blue


def _screenshot(html: str, directory: Path, height: int) -> Path:
    chromium = shutil.which("chromium")
    assert chromium is not None, "apt-get install chromium (.ci/run does)"
    page, png = directory / "report.html", directory / "report.png"
    page.write_text(html)
    done = subprocess.run(
        [
            chromium,
            "--headless",
            "--no-sandbox",  # root, in CI as here
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={directory / 'chromium'}",
            f"--screenshot={png}",
            f"--window-size={WIDTH},{height}",
            page.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return png


def _paeth_row(line: bytearray, previous: bytes, channels: int) -> None:
    for index in range(len(line)):
        left = line[index - channels] if index >= channels else 0
        up = previous[index]
        up_left = previous[index - channels] if index >= channels else 0
        estimate = left + up - up_left
        to_left, to_up, to_up_left = (
            abs(estimate - left),
            abs(estimate - up),
            abs(estimate - up_left),
        )
        if to_left <= to_up and to_left <= to_up_left:
            predicted = left
        elif to_up <= to_up_left:
            predicted = up
        else:
            predicted = up_left
        line[index] = (line[index] + predicted) & 0xFF


def _add_bytes(first: bytes, second: bytes) -> bytes:
    """Byte-wise addition modulo 256, on whole rows at once (SWAR on Python integers): the
    common "up" filter decoded without a loop over bytes."""
    low, high = int.from_bytes(b"\x7f" * len(first)), int.from_bytes(b"\x80" * len(first))
    a, b = int.from_bytes(first), int.from_bytes(second)
    return (((a & low) + (b & low)) ^ ((a ^ b) & high)).to_bytes(len(first))


def _unfilter(kind: int, line: bytes, previous: bytes, channels: int) -> bytes:
    """One row of the PNG filters (RFC 2083, 6.3): none, sub, up, average, paeth."""
    if kind == 0:
        return line
    if kind == 2:
        return _add_bytes(line, previous)
    row = bytearray(line)
    if kind == 4:
        _paeth_row(row, previous, channels)
        return bytes(row)
    for index in range(len(row)):
        left = row[index - channels] if index >= channels else 0
        predicted = left if kind == 1 else (left + previous[index]) // 2
        row[index] = (row[index] + predicted) & 0xFF
    return bytes(row)


def _pixels(png: bytes) -> tuple[int, list[bytes]]:
    """Width and RGB rows (3 bytes a pixel) of an 8-bit RGB or RGBA, non-interlaced PNG, as
    Chromium writes them."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    chunks, offset = [], 8
    while offset < len(png):
        length, kind = struct.unpack(">I4s", png[offset : offset + 8])
        chunks.append((kind, png[offset + 8 : offset + 8 + length]))
        offset += 12 + length
    header = dict(chunks)[b"IHDR"]
    width, height, depth, colour, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert (depth, colour in (2, 6), interlace) == (8, True, 0)
    channels = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"))
    stride = width * channels
    rows: list[bytes] = []
    previous = bytes(stride)
    for row in range(height):
        start = row * (stride + 1)
        previous = _unfilter(raw[start], raw[start + 1 : start + 1 + stride], previous, channels)
        rows.append(
            previous
            if channels == 3
            else bytes(byte for index, byte in enumerate(previous) if index % 4 != 3)
        )
    return width, rows


def _rgb(css: str) -> Rgb:
    return bytes.fromhex(css.removeprefix("#"))


def _colours(rows: list[bytes]) -> Counter[Rgb]:
    return Counter(row[x : x + 3] for row in rows for x in range(0, len(row), 3))


def _shoot(name: str, tmp_path: Path, height: int) -> list[bytes]:
    document = json.loads((DATA / name).read_text())
    png = _screenshot(html_report(document), tmp_path, height)
    width, rows = _pixels(png.read_bytes())
    assert (width, len(rows)) == (WIDTH, height)
    assert all(len(row) == WIDTH * 3 for row in rows)
    return rows


def test_fleet_summary_is_painted_first(tmp_path: Path) -> None:
    rows = _shoot("fleet-before.json", tmp_path, 1800)
    everywhere = _colours(rows)
    # Text, badges and tables antialias into many shades: a blank or unstyled page has few.
    assert len(everywhere) > 200
    assert everywhere[_rgb(PAGE_BACKGROUND)] > WIDTH * 100
    top = _colours(rows[:SUMMARY_ROWS])
    # One tile per status, each filled with its status's tint (a few thousand pixels each).
    for status in ("ok", "drift", "refused", "unreachable"):
        _text, background, _border = PALETTE[status]
        assert top[_rgb(background)] > 5000, status


def test_jitter_plots_are_painted(tmp_path: Path) -> None:
    rows = _shoot("jitter-after.json", tmp_path, 3400)
    # The histogram's bars, inline SVG, somewhere below the settings.
    assert _colours(rows)[_rgb(BAR)] > 500
    assert _colours(rows[:SUMMARY_ROWS])[_rgb(BAR)] == 0
