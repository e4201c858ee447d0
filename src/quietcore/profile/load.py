"""Load a profile: YAML with a line for every key, ``extends`` chains, merge, validation.

The YAML is composed into nodes (not loaded straight to Python values) so that every mapping
key and list item keeps its line; those lines become ``LoadedProfile.sources`` and the
position of every validation problem. YAML features that hide what a file means (duplicate
keys, aliases, ``<<`` merge keys, non-text keys, collection tags) are refused.

Merge rules along ``extends`` (the child wins): mappings merge key by key, recursively; lists
and scalars replace; a ``null`` value deletes the key, so the schema default applies.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args, get_origin

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

import quietcore
from quietcore.profile.errors import ProfileError, ProfileProblem
from quietcore.profile.loaded import LoadedProfile
from quietcore.profile.schema import Profile

BUILTIN_DIR = Path(quietcore.__file__).parent / "builtin_profiles"

# A path into the profile data: mapping keys and list indices.
Key = tuple[str | int, ...]
Position = tuple[str, int]  # (file, 1-based line)

_MERGE_TAG = "tag:yaml.org,2002:merge"
# Collections must be plain maps and lists; explicit tags like !!set or !!omap are refused.
_PLAIN_TAGS: dict[type[yaml.Node], set[str]] = {
    yaml.MappingNode: {"tag:yaml.org,2002:map"},
    yaml.SequenceNode: {"tag:yaml.org,2002:seq"},
}


@dataclass(frozen=True)
class BuiltinProfile:
    name: str  # what ``--profile`` takes: the file name without ``.yaml``
    summary: str | None
    path: Path
    extends: str | None


def load_profile(name_or_path: str, search_dirs: Sequence[Path] = ()) -> LoadedProfile:
    """Load, merge along ``extends`` and validate a profile given by file path or name.

    A name is looked up as ``NAME.yaml`` in ``search_dirs``, then in ``BUILTIN_DIR``.
    Raises ``ProfileError`` carrying every problem found, with file, line and field.
    """
    try:
        start = _locate(name_or_path, None, search_dirs)
    except LookupError as missing:
        raise _error(name_or_path, None, "", str(missing)) from None
    chain = _read_chain(start, search_dirs)
    data, positions = _merge_chain(chain)
    _imply_runtime_isolation(data, positions)
    profile = _validate(data, positions, chain[0].file)
    canonical = json.dumps(profile.model_dump(mode="json"), sort_keys=True)
    return LoadedProfile(
        profile=profile,
        sources={_dotted(key): position for key, position in positions.items()},
        files=tuple(document.file for document in chain),
        digest=hashlib.sha256(canonical.encode()).hexdigest(),
    )


def list_builtin() -> list[BuiltinProfile]:
    """Every built-in profile, read without validation (a broken file still shows its name)."""
    builtins = []
    for path in sorted(BUILTIN_DIR.glob("*.yaml")):
        data = _peek(path)
        builtins.append(
            BuiltinProfile(
                name=path.stem,
                summary=_text_or_none(data.get("summary")),
                path=path,
                extends=_text_or_none(data.get("extends")),
            )
        )
    return builtins


# --- Finding files ------------------------------------------------------------------------


def _is_path(reference: str) -> bool:
    return "/" in reference or reference.endswith((".yaml", ".yml"))


def _locate(reference: str, beside: Path | None, search_dirs: Sequence[Path]) -> Path:
    """The file a profile reference means; ``beside`` is the directory of the file that
    says ``extends: reference``, looked in first. Raises ``LookupError`` with the reason."""
    if _is_path(reference):
        path = Path(reference if beside is None else os.path.normpath(beside / reference))
        if path.is_file():
            return path
        raise LookupError(f"no profile file at {str(path)!r}")
    directories = [*([] if beside is None else [beside]), *search_dirs]
    for directory in (*directories, BUILTIN_DIR):
        candidate = directory / f"{reference}.yaml"
        if candidate.is_file():
            return candidate
    places = ", ".join([*(str(directory) for directory in directories), "the built-in profiles"])
    builtins = [builtin.name for builtin in list_builtin()]
    close = difflib.get_close_matches(reference, builtins, n=1)
    parts = [
        f"no profile named {reference!r} (looked for {reference}.yaml in {places}).",
        *(f"Did you mean {name!r}?" for name in close),
        f"Built-in profiles: {', '.join(builtins) or 'none'}.",
    ]
    raise LookupError(" ".join(parts))


# --- Reading one file ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Document:
    path: Path
    data: dict[str, Any]
    lines: dict[Key, int]

    @property
    def file(self) -> str:
        return display_name(self.path)

    @property
    def name(self) -> str:
        return str(self.data["name"])


def _line(mark: yaml.Mark) -> int:
    return mark.line + 1


def display_name(path: Path) -> str:
    """How reports name a profile file: ``builtin:NAME.yaml`` for the built-in profiles (their
    install path says nothing to a reader), otherwise the path as given."""
    if path.parent.resolve() == BUILTIN_DIR.resolve():
        return f"builtin:{path.name}"
    return str(path)


def _read_document(path: Path) -> _Document:
    file = display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as problem:
        raise _error(file, None, "", f"cannot read the profile: {problem}") from None
    loader = yaml.SafeLoader(text)
    builder = _DataBuilder(file, loader)
    try:
        data = builder.top_level(loader.get_single_node())
    except yaml.MarkedYAMLError as problem:
        raise _error(file, _yaml_error_line(problem), "", _yaml_error_text(problem)) from None
    except yaml.YAMLError as problem:
        raise _error(file, None, "", f"not readable as YAML: {problem}") from None
    finally:
        loader.dispose()
    if builder.problems:
        raise ProfileError(_sorted(builder.problems))
    if data.get("name") is None:
        line = builder.lines.get(("name",), builder.first_line)
        raise _error(file, line, "name", "the profile has no `name:`; every profile file needs one")
    return _Document(path, data, builder.lines)


def _yaml_error_line(problem: yaml.MarkedYAMLError) -> int | None:
    mark = problem.problem_mark or problem.context_mark
    return None if mark is None else _line(mark)


def _yaml_error_text(problem: yaml.MarkedYAMLError) -> str:
    context = problem.context
    if context and problem.context_mark and problem.context_mark is not problem.problem_mark:
        context += f" (from line {_line(problem.context_mark)})"
    parts = [part for part in (context, problem.problem) if part]
    return "YAML syntax error: " + (", ".join(parts) or str(problem))


class _DataBuilder:
    """Turns composed YAML nodes into plain data, recording the line of every key and item
    and a problem for every YAML feature that hides what the file means."""

    def __init__(self, file: str, loader: yaml.SafeLoader) -> None:
        self.file = file
        self.loader = loader
        self.lines: dict[Key, int] = {}
        self.first_line = 1
        self.problems: list[ProfileProblem] = []
        # An alias (*name) yields the very node its anchor (&name) labelled: a node met twice
        # is an alias. Anchors alone change nothing and are allowed.
        self.seen: set[int] = set()

    def top_level(self, root: yaml.Node | None) -> dict[str, Any]:
        if root is None:
            self.problem(1, (), "the profile is empty; it needs at least `name:`")
            return {}
        self.first_line = _line(root.start_mark)
        if not isinstance(root, yaml.MappingNode):
            self.problem(
                self.first_line, (), "the top level must be a mapping of `key: value` lines"
            )
            return {}
        return self.mapping(root, ())

    def value(self, node: yaml.Node, key: Key) -> Any:
        if id(node) in self.seen:
            self.problem(
                self.lines.get(key, _line(node.start_mark)),
                key,
                "YAML aliases (*name) are not allowed: write the value out where it applies",
            )
            return None
        self.seen.add(id(node))
        if node.tag not in _PLAIN_TAGS.get(type(node), {node.tag}):
            self.problem(_line(node.start_mark), key, f"YAML tag {node.tag!r} is not allowed")
            return None
        if isinstance(node, yaml.MappingNode):
            return self.mapping(node, key)
        if isinstance(node, yaml.SequenceNode):
            return self.sequence(node, key)
        return self.loader.construct_object(node, deep=True)

    def sequence(self, node: yaml.SequenceNode, key: Key) -> list[Any]:
        items = []
        for index, item in enumerate(node.value):
            self.lines[(*key, index)] = _line(item.start_mark)
            items.append(self.value(item, (*key, index)))
        return items

    def mapping(self, node: yaml.MappingNode, key: Key) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            name = self.key_text(key_node, key)
            if name is None:
                continue
            line = _line(key_node.start_mark)
            path = (*key, name)
            if name in result:
                self.problem(
                    line,
                    path,
                    f"duplicate key {name!r}: first on line {self.lines[path]}, again on line "
                    f"{line}; YAML would silently keep only the last one",
                )
                continue
            self.lines[path] = line
            result[name] = self.value(value_node, path)
        return result

    def key_text(self, node: yaml.Node, mapping: Key) -> str | None:
        line = _line(node.start_mark)
        if node.tag == _MERGE_TAG:
            self.problem(line, mapping, "YAML merge keys (<<) are not allowed")
            return None
        if not isinstance(node, yaml.ScalarNode):
            self.problem(line, mapping, "a key must be plain text, not a list or mapping")
            return None
        key = self.loader.construct_object(node)
        if isinstance(key, str):
            return key
        if isinstance(key, int) and not isinstance(key, bool):
            return str(key)  # numeric keys are legitimate, e.g. verify.jitter.accept.events_over_us
        self.problem(
            line,
            mapping,
            f"key {node.value!r} is not text (YAML reads it as {type(key).__name__}); "
            "put it in quotes",
        )
        return None

    def problem(self, line: int, key: Key, message: str) -> None:
        self.problems.append(ProfileProblem(self.file, line, _dotted(key), message))


def _peek(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def _text_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None


# --- The extends chain and the merge --------------------------------------------------------


def _read_chain(start: Path, search_dirs: Sequence[Path]) -> list[_Document]:
    """The requested document first, then its parent, grandparent, ..."""
    chain = [_read_document(start)]
    while (reference := chain[-1].data.get("extends")) is not None:
        child = chain[-1]
        line = child.lines[("extends",)]
        if not isinstance(reference, str) or not reference.strip():
            raise _error(child.file, line, "extends", "must be a profile name or a .yaml path")
        try:
            parent = _locate(reference, child.path.parent, search_dirs)
        except LookupError as missing:
            raise _error(child.file, line, "extends", str(missing)) from None
        seen = [document.path.resolve() for document in chain]
        if parent.resolve() in seen:
            closing = chain[seen.index(parent.resolve())]
            names = " -> ".join(document.name for document in [*chain, closing])
            raise _error(child.file, line, "extends", f"extends cycle: {names}")
        chain.append(_read_document(parent))
    return chain


def _merge_chain(chain: Sequence[_Document]) -> tuple[dict[str, Any], dict[Key, Position]]:
    data: dict[str, Any] = {}
    positions: dict[Key, Position] = {}
    for document in reversed(chain):
        declared = {key: value for key, value in document.data.items() if key != "extends"}
        child_positions = {key: (document.file, line) for key, line in document.lines.items()}
        data = merge(data, declared, positions, child_positions)
    requested = chain[0]
    if len(chain) > 1:
        data["extends"] = chain[1].name
        positions[("extends",)] = (requested.file, requested.lines[("extends",)])
    return data, positions


# What a runtime partition needs besides the cgroups: interrupts and unbound kernel work kept
# off the isolated CPUs. ``cpu.isolation: [cpuset]`` makes these the default, placed (for plan
# and verify output) where the isolation was declared.
RUNTIME_ISOLATION_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("irq", "affinity"),
    ("kernel", "workqueue_mask"),
)


def _imply_runtime_isolation(data: dict[str, Any], positions: dict[Key, Position]) -> None:
    cpu = data.get("cpu")
    isolation = cpu.get("isolation") if isinstance(cpu, dict) else None
    if not isinstance(isolation, list) or "cpuset" not in isolation:
        return
    where = positions.get(("cpu", "isolation"))
    for section, name in RUNTIME_ISOLATION_DEFAULTS:
        holder = data.setdefault(section, {})
        if not isinstance(holder, dict) or name in holder:
            continue
        holder[name] = "reserved"
        if where is not None:
            positions.setdefault((section,), where)
            positions[(section, name)] = where


def merge(
    parent: Mapping[str, Any],
    child: Mapping[str, Any],
    positions: dict[Key, Position],
    child_positions: Mapping[Key, Position],
    at: Key = (),
) -> dict[str, Any]:
    """Merge ``child`` over ``parent`` (see the module docstring for the rules).

    ``positions`` holds the parent's sources on entry and the merged sources on return: the
    child's for every key it declares, none for a key it deletes.
    """
    merged = dict(parent)
    for name, value in child.items():
        key = (*at, name)
        if value is None:
            merged.pop(name, None)
            _forget(positions, key)
            continue
        inherited = merged.get(name)
        if not (isinstance(inherited, dict) and isinstance(value, dict)):
            _forget(positions, key)
            inherited = {}
        if isinstance(value, dict):
            # Merging even into nothing, so that nulls deep inside are dropped too.
            positions[key] = child_positions[key]
            merged[name] = merge(inherited, value, positions, child_positions, key)
        else:
            positions.update(_under(child_positions, key))
            merged[name] = value
    return merged


def _under(positions: Mapping[Key, Position], key: Key) -> dict[Key, Position]:
    return {path: where for path, where in positions.items() if path[: len(key)] == key}


def _forget(positions: dict[Key, Position], key: Key) -> None:
    for path in _under(positions, key):
        del positions[path]


# --- Validation problems --------------------------------------------------------------------


def _validate(data: dict[str, Any], positions: Mapping[Key, Position], requested: str) -> Profile:
    try:
        return Profile.model_validate(data)
    except ValidationError as invalid:
        issues = [_issue(error, data) for error in invalid.errors()]
        problems = [
            _problem(issue, positions, requested) for issue in _one_branch_per_union(issues)
        ]
        raise ProfileError(_sorted(problems)) from None


@dataclass(frozen=True)
class _Issue:
    """One pydantic error with its location split into data keys and union branch names."""

    key: Key
    branches: tuple[tuple[int, str], ...]  # (how many keys precede the branch, branch name)
    kind: str
    message: str
    value: object
    # The error is about the last key itself (a bad sysctl name), not its value: the field
    # is the mapping holding it, the line is the key's own.
    about_key: bool = False

    @property
    def field(self) -> Key:
        return self.key[:-1] if self.about_key else self.key


def _issue(error: ErrorDetails, data: object) -> _Issue:
    key: list[str | int] = []
    branches: list[tuple[int, str]] = []
    node: Any = data
    last = len(error["loc"]) - 1
    for position, step in enumerate(error["loc"]):
        if _holds(node, step):
            node = node[step]
            key.append(step)
        elif position == last and error["type"] == "missing":
            key.append(step)
        elif step != "[key]":
            branches.append((len(key), str(step)))
    about_key = error["loc"][-1] == "[key]"
    # pydantic names the model class ("instance of CpuSection"); the user wrote YAML.
    message = "Input should be a mapping" if error["type"] == "model_type" else error["msg"]
    return _Issue(
        tuple(key), tuple(branches), error["type"], message, error.get("input"), about_key
    )


def _holds(node: object, step: str | int) -> bool:
    if isinstance(node, dict):
        return step in node
    return isinstance(node, list) and isinstance(step, int) and 0 <= step < len(node)


def _one_branch_per_union(issues: list[_Issue], level: int = 0) -> list[_Issue]:
    """A value that fits no member of a union fails once per member; keep the member that
    came closest, so the user reads one relevant complaint instead of every alternative."""
    kept = [issue for issue in issues if len(issue.branches) <= level]
    sites: dict[tuple[Key, tuple[tuple[int, str], ...]], list[_Issue]] = {}
    for issue in issues:
        if len(issue.branches) > level:
            count = issue.branches[level][0]
            site = (issue.key[:count], issue.branches[:level])
            sites.setdefault(site, []).append(issue)
    for group in sites.values():
        kept += _one_branch_per_union(_closest_branch(group, level), level + 1)
    return kept


def _closest_branch(group: list[_Issue], level: int) -> list[_Issue]:
    by_branch: dict[str, list[_Issue]] = {}
    for issue in group:
        by_branch.setdefault(issue.branches[level][1], []).append(issue)
    count = group[0].branches[level][0]

    def closeness(issues: list[_Issue]) -> tuple[bool, int]:
        # A branch whose value had the right shape but a wrong value beats a shape mismatch;
        # among equals, the branch that got deeper into the value is the one meant.
        shaped = any(not _is_shape_mismatch(issue.kind) for issue in issues)
        return shaped, max(len(issue.key) - count for issue in issues)

    best = max(closeness(issues) for issues in by_branch.values())
    winners = [issues for issues in by_branch.values() if closeness(issues) == best]
    if len(winners) == 1:
        return winners[0]
    first = winners[0][0]
    return [
        _Issue(
            key=first.key[:count],
            branches=first.branches[:level],
            kind=first.kind,
            message=_either([issues[0].message for issues in winners]),
            value=first.value,
        )
    ]


def _is_shape_mismatch(kind: str) -> bool:
    return kind.endswith(("_type", "_parsing"))


def _either(messages: list[str]) -> str:
    prefix = "Input should be "
    if all(message.startswith(prefix) for message in messages):
        return prefix + " or ".join(message.removeprefix(prefix) for message in messages)
    return "; or ".join(messages)


def _problem(issue: _Issue, positions: Mapping[Key, Position], requested: str) -> ProfileProblem:
    file, line = _position(issue.key, positions, requested)
    return ProfileProblem(file, line, _dotted(issue.field), _plain_message(issue))


def _position(
    key: Key, positions: Mapping[Key, Position], requested: str
) -> tuple[str, int | None]:
    for length in range(len(key), 0, -1):
        if key[:length] in positions:
            return positions[key[:length]]
    return requested, None


def _plain_message(issue: _Issue) -> str:
    if issue.kind == "missing":
        return f"required key {issue.key[-1]!r} is missing"
    if issue.kind == "extra_forbidden":
        return _unknown_key_message(issue.key)
    if issue.kind == "value_error":
        return issue.message.removeprefix("Value error, ")
    if isinstance(issue.value, str | int | float | bool):
        return f"{issue.message} (got {issue.value!r})"
    return issue.message


def _unknown_key_message(key: Key) -> str:
    name = str(key[-1])
    allowed = sorted(_model_at(key[:-1]).model_fields)
    close = difflib.get_close_matches(name, allowed, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown key {name!r}{hint} (allowed here: {', '.join(allowed)})"


def _model_at(key: Key) -> type[BaseModel]:
    """The schema model describing the mapping at ``key`` (an unknown key's parent)."""
    model: type[BaseModel] = Profile
    for step in key:
        field = model.model_fields.get(step) if isinstance(step, str) else None
        inner = None if field is None else _model_in(field.annotation)
        if inner is not None:
            model = inner
    return model


def _model_in(annotation: object) -> type[BaseModel] | None:
    if get_origin(annotation) is None and isinstance(annotation, type):
        return annotation if issubclass(annotation, BaseModel) else None
    for argument in get_args(annotation):
        found = _model_in(argument)
        if found is not None:
            return found
    return None


# --- Helpers -------------------------------------------------------------------------------


def _dotted(key: Key) -> str:
    return ".".join(str(step) for step in key)


def _error(file: str, line: int | None, field: str, message: str) -> ProfileError:
    return ProfileError([ProfileProblem(file, line, field, message)])


def _sorted(problems: list[ProfileProblem]) -> list[ProfileProblem]:
    return sorted(problems, key=lambda problem: (problem.file, problem.line or 0, problem.field))
