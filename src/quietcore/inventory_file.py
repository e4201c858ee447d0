"""pyinfra inventory files as text: one group of hosts, each with its connection data. Pure.

The values are written with ``repr``, so the file is plain Python literals whatever the text
(a host name or a path with quotes cannot become code).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

HostEntry = tuple[str, dict[str, Any]]


def inventory_text(header: Sequence[str], group: str, entries: Sequence[HostEntry]) -> str:
    """``header`` lines first (a comment or docstring), then ``group = [(host, data), ...]``."""
    lines = [*header, "", f"{group} = ["]
    for host, data in entries:
        lines.append(f"    ({host!r}, {{")
        lines.extend(f"        {key!r}: {value!r}," for key, value in data.items())
        lines.append("    }),")
    lines.append("]")
    return "\n".join(lines) + "\n"
