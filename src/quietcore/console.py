"""The one console layer: everything quietcore shows a person goes through here.

Results go to stdout (so ``--format json | jq`` works); progress, notes and errors go to
stderr. Progress is shown only on a terminal.
"""

from __future__ import annotations

import io
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

from rich.console import Console, RenderableType
from rich.markup import escape

# Piped output (CI logs, `| less`) gets a wide fixed width so keys stay on one line; COLUMNS
# still wins when set.
_out = Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 160)
_err = Console(stderr=True, highlight=False, soft_wrap=True)


def show(renderable: RenderableType) -> None:
    _out.print(renderable)


def show_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=False) + "\n")


def note(message: str) -> None:
    _err.print(f"[dim]{escape(message)}[/dim]")


def error(message: str) -> None:
    _err.print(f"[bold red]error:[/bold red] {escape(message)}")


def fail(message: str, status: int = 2) -> NoReturn:
    """Print an error and exit; 2 is quietcore's status for bad input."""
    error(message)
    sys.exit(status)


@contextmanager
def progress(message: str) -> Iterator[Any]:
    """A spinner counting finished items, on a terminal only. Yields ``advance(name)``."""
    done = 0
    if not _err.is_terminal:
        yield lambda _name: None
        return
    with _err.status(escape(message)) as status:

        def advance(name: str) -> None:
            nonlocal done
            done += 1
            status.update(f"{escape(message)} ({done} done, last: {escape(name)})")

        yield advance


def render_plain(renderables: list[RenderableType], width: int = 160) -> str:
    """Render to plain text (no colour codes), e.g. for ``-o report.txt``."""
    plain = Console(width=width, no_color=True, highlight=False, record=True, file=io.StringIO())
    for renderable in renderables:
        plain.print(renderable)
    return plain.export_text()
