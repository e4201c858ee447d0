"""A profile as loaded: the validated model plus where each field was declared."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from quietcore.profile.schema import Profile


@dataclass(frozen=True)
class LoadedProfile:
    profile: Profile
    # Dotted field path (``kernel.sysctl.net.core.busy_poll``, ``network.interfaces.0.match``)
    # -> (file, line) of the profile file in the ``extends`` chain that declared it last.
    sources: Mapping[str, tuple[str, int]]
    files: tuple[str, ...]  # the extends chain, the requested file first
    digest: str  # sha256 of the canonical JSON of the merged profile

    def locate(self, field: str) -> tuple[str, int | None]:
        """File and line for ``field``: its own declaration, else its nearest declared parent,
        else the requested file without a line."""
        path = field
        while path:
            if path in self.sources:
                return self.sources[path]
            path = path.rpartition(".")[0]
        return self.files[0], None

    def source_of(self, field: str) -> str | None:
        file, line = self.locate(field)
        return None if line is None else f"{file}:{line}"
