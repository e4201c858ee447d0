"""The HTML report's building blocks: badges, tables, cells, facts, tiles. Pure; every text
is escaped here, and every element closed (the page is well-formed XML)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from html import escape

NONE = "\u2013"  # an en dash: nothing to show


def badge(status: str) -> str:
    label = status.replace("_", " ")
    return f'<span class="badge s-{escape(status)}">{escape(label)}</span>'


def _rows(rows: Iterable[Sequence[str]]) -> str:
    return "".join("<tr>" + "".join(row) + "</tr>" for row in rows)


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[str]],
    *,
    numeric: int = 0,
    widths: Sequence[int] = (),
) -> str:
    """``numeric``: how many trailing columns hold numbers (right-aligned); ``widths``: fixed
    column widths in percent, so long keys and values wrap instead of squeezing a column."""
    first = len(headers) - numeric
    head = "".join(
        f'<th class="num">{escape(header)}</th>' if index >= first else f"<th>{escape(header)}</th>"
        for index, header in enumerate(headers)
    )
    columns = ""
    if widths:
        columns = (
            "<colgroup>"
            + "".join(f'<col style="width:{width}%"/>' for width in widths)
            + "</colgroup>"
        )
    css_class = ' class="fixed"' if widths else ""
    return (
        f"<table{css_class}>{columns}<thead><tr>{head}</tr></thead>"
        f"<tbody>{_rows(rows)}</tbody></table>"
    )


def cell(text: str, css_class: str = "") -> str:
    attribute = f' class="{css_class}"' if css_class else ""
    return f"<td{attribute}>{escape(text)}</td>"


def fact_list(items: Iterable[tuple[str, str]]) -> str:
    pairs = "".join(f"<dt>{escape(name)}</dt><dd>{value}</dd>" for name, value in items)
    return f'<dl class="facts">{pairs}</dl>'


def tile(count: int, label: str, status: str | None) -> str:
    classes = ["tile"]
    if status is not None:
        classes.append(f"s-{status}")
    if count == 0:
        classes.append("zero")
    return (
        f'<div class="{" ".join(classes)}"><span class="count">{count}</span>'
        f'<span class="label">{escape(label)}</span></div>'
    )


def error_box(status: str, message: str) -> str:
    return f'<div class="error s-{escape(status)}">{escape(message)}</div>'
