"""Errors that point at the profile: file, line and field of every problem."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProfileProblem:
    file: str
    line: int | None
    field: str  # dotted path, e.g. ``network.interfaces.0.match``; "" for the whole file
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.field or '(profile)'}: {self.message}"


class ProfileError(Exception):
    """A profile that cannot be used (as a whole, or on one host). Nothing is changed."""

    def __init__(self, problems: list[ProfileProblem]) -> None:
        super().__init__("\n".join(str(problem) for problem in problems))
        self.problems = problems


class ResolveError(Exception):
    """The profile cannot be satisfied on this host. ``field`` is the dotted profile path."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message
