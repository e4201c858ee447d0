"""The one list of knob families. Adding a family means adding its module and one line here."""

from __future__ import annotations

from quietcore.knobs.base import KnobFamily

FAMILIES: tuple[KnobFamily, ...] = ()


def family(name: str) -> KnobFamily:
    for candidate in FAMILIES:
        if candidate.name == name:
            return candidate
    raise KeyError(f"no knob family named {name!r}")
