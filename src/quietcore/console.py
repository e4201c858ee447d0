"""The one console layer: everything quietcore shows a person goes through here.

Results go to stdout (so ``--format json | jq`` works); progress, notes and errors go to
stderr. Progress is shown only on a terminal. rich is loaded on first use: a report written
as JSON, XML or metrics (what automation asks for) never needs it.
"""

from __future__ import annotations

import functools
import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from rich.console import Console, RenderableType


@functools.cache
def _out() -> Console:
    from rich.console import Console

    # Piped output (CI logs, `| less`) gets a wide fixed width so keys stay on one line;
    # COLUMNS still wins when set.
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)


@functools.cache
def _err() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def show(renderable: RenderableType) -> None:
    _out().print(renderable)


def show_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def show_text(text: str) -> None:
    """A rendered report (XML, HTML, a metrics textfile) exactly as made."""
    sys.stdout.write(text)


def note(message: str) -> None:
    _err().print(f"[dim]{_escape(message)}[/dim]")


def error(message: str) -> None:
    _err().print(f"[bold red]error:[/bold red] {_escape(message)}")


def fail(message: str, status: int = 2) -> NoReturn:
    """Print an error and exit; 2 is quietcore's status for bad input."""
    error(message)
    sys.exit(status)


@contextmanager
def progress(message: str) -> Iterator[Any]:
    """A spinner counting finished items, on a terminal only. Yields ``advance(name, total)``
    (``total``: how many items there are in all)."""
    done = 0
    if not sys.stderr.isatty():
        yield lambda _name, _total: None
        return
    with _err().status(_escape(message)) as status:

        def advance(name: str, total: int) -> None:
            nonlocal done
            done += 1
            status.update(f"{_escape(message)}: {done}/{total} done, last {_escape(name)}")

        yield advance


def render_plain(renderables: list[RenderableType], width: int = 160) -> str:
    """Render to plain text (no colour codes), e.g. for ``-o report.txt``."""
    from rich.console import Console

    plain = Console(width=width, no_color=True, highlight=False, record=True, file=io.StringIO())
    for renderable in renderables:
        plain.print(renderable)
    return plain.export_text()
