"""Every machine-readable report quietcore writes is made from one verify document
(``quietcore.verify/v1``): this picks the renderer for a ``--format``."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from quietcore import lazy

Renderer = Callable[[Mapping[str, Any]], str]

RENDERERS: dict[str, str] = {
    "json": "quietcore.report.formats:json_text",
    "junit": "quietcore.report.junit:junit_xml",
    "html": "quietcore.report.html:html_report",
    "prometheus": "quietcore.report.prometheus:prometheus_textfile",
}
FORMAT_HELP = (
    "table for people; json (schema quietcore.verify/v1) for tools; junit (one test case per "
    "host and key: drift fails, an unreachable host errors) for CI systems; html (one "
    "self-contained page, with jitter plots when measured) for auditors; prometheus (a textfile "
    "for node_exporter's textfile collector) for monitoring."
)


def json_text(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2) + "\n"


def render(output_format: str, document: Mapping[str, Any]) -> str:
    """``document`` as ``output_format`` (one of ``RENDERERS``)."""
    renderer: Renderer = lazy.load(RENDERERS[output_format])
    return renderer(document)
