"""The jinja2 templates of ``quietcore/k8s_manifests``: one environment, shared by the kubelet
drop-in that apply writes and by ``quietcore k8s render``, so both produce the same text."""

from __future__ import annotations

import functools
import importlib.resources
import json
from typing import Any

import jinja2


def _quoted(value: object) -> str:
    """A JSON string is a YAML double-quoted scalar: always a string, never ``true`` or a
    number, and a newline or quote stays inside it."""
    return json.dumps(str(value))


def _block(text: str, indent: int) -> str:
    """Multi-line text as a YAML literal block (``|``) indented by ``indent``, readable in
    review; text a block cannot hold exactly (no final newline, a leading space, carriage
    returns, trailing blank lines) falls back to a quoted string."""
    exact = (
        text.endswith("\n")
        and not text.endswith("\n\n")
        and not text[:1].isspace()
        and "\r" not in text
        and all(line.isprintable() or line == "" for line in text.splitlines())
    )
    if not exact:
        return _quoted(text)
    pad = " " * indent
    body = "".join(f"{pad}{line}\n" if line else "\n" for line in text.splitlines())
    return "|\n" + body.rstrip("\n")


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("quietcore", "k8s_manifests"),
        undefined=jinja2.StrictUndefined,  # a missing value is a bug, never an empty string
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # YAML, not HTML: values are quoted with the ``q`` filter
    )
    env.filters["q"] = _quoted
    env.filters["block"] = _block
    return env


def render(name: str, **values: Any) -> str:
    return environment().get_template(name).render(**values)


def verifier_script() -> str:
    """H2's stdlib-only node verifier, shipped in the package, for the verifier ConfigMap."""
    resource = importlib.resources.files("quietcore.k8s") / "target" / "qc_node_verifier.py"
    return resource.read_text(encoding="utf-8")
