"""Strict YAML reading that remembers the line of every key and item.

The schema reports errors as `file:line: key.path: ...`, so values are read from
PyYAML's node tree (which carries marks) instead of from plain dicts. Duplicate
keys, anchors that alias into odd places and non-string keys are errors here,
because PyYAML would otherwise silently keep the last value.
"""

from __future__ import annotations

import difflib
import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from ml_cost_exporter.config.errors import ConfigError

MAX_FILE_BYTES = 1024 * 1024  # a pricing config is a few KiB; a catalog overlay a few hundred
MAX_DEPTH = 64
MAX_NODES = 50_000  # after alias expansion
MAX_INTEGER = int(sys.float_info.max)  # every number is used as a float; a larger integer cannot be one
MAX_INTEGER_CHARS = 400  # longer integer text is refused before Python converts it (past 4300 digits it raises)
_INT_TAG = "tag:yaml.org,2002:int"
_EVENTS_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml scans ~15x faster where present


@dataclass(frozen=True)
class Located:
    """A YAML value with where it came from: file, 1-based line and dotted key path."""

    value: Any
    source: str
    line: int
    path: str

    def error(self, message: str) -> ConfigError:
        return ConfigError(self.source, self.line, self.path, message)


def _describe(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f'the string "{value[:60]}"' if len(value) <= 60 else f'the string "{value[:60]}..."'
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _child_path(parent: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{parent}[{key}]"
    return f"{parent}.{key}" if parent else key


def _convert(node: yaml.Node, source: str, path: str, scalars: yaml.SafeLoader) -> Located:
    line = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        items: dict[str, Located] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise ConfigError(source, key_node.start_mark.line + 1, path, "keys must be plain strings")
            key = key_node.value
            if key == "<<":
                raise ConfigError(source, key_node.start_mark.line + 1, path, "merge keys (<<) are not supported")
            if key in items:
                raise ConfigError(
                    source, key_node.start_mark.line + 1, _child_path(path, key),
                    f"duplicate key (first set on line {items[key].line})",
                )
            child = _convert(value_node, source, _child_path(path, key), scalars)
            # A key's line is where the key is written, which is where a reader looks.
            items[key] = Located(child.value, source, key_node.start_mark.line + 1, child.path)
        return Located(items, source, line, path)
    if isinstance(node, yaml.SequenceNode):
        return Located(
            [_convert(item, source, _child_path(path, i), scalars) for i, item in enumerate(node.value)],
            source, line, path,
        )
    if node.tag == _INT_TAG and len(node.value) > MAX_INTEGER_CHARS:
        raise ConfigError(source, line, path, f"integer too large (more than {MAX_INTEGER_CHARS} characters)")
    try:
        value = scalars.construct_object(node, deep=True)
    except yaml.constructor.ConstructorError as exc:
        raise ConfigError(source, line, path, f"cannot read value: {exc.problem}") from None
    except (ValueError, OverflowError, TypeError) as exc:  # an int past Python's digit limit, a bad date
        raise ConfigError(source, line, path, f"cannot read value: {_first_line(exc)}") from None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
        raise ConfigError(source, line, path, "integer too large (larger than a float can hold)")
    return Located(value, source, line, path)


def _first_line(exc: BaseException) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@dataclass
class _Frame:
    """An open mapping or sequence while the event stream is scanned."""

    path: str
    anchor: str | None
    nodes_before: int
    mapping: bool
    index: int = 0
    key: str | None = None
    expect_key: bool = True

    def child_path(self) -> str:
        if not self.mapping:
            return _child_path(self.path, self.index)
        return self.path if self.expect_key else _child_path(self.path, self.key or "?")

    def advance(self, event: yaml.Event) -> None:
        if not self.mapping:
            self.index += 1
        elif self.expect_key:
            self.key = event.value if isinstance(event, yaml.ScalarEvent) else None
            self.expect_key = False
        else:
            self.expect_key = True


def check_bounds(text: str, source: str, max_depth: int = MAX_DEPTH, max_nodes: int = MAX_NODES) -> None:
    """Refuse YAML whose nesting or alias-expanded size is over the bounds, before it is composed."""
    sizes: dict[str, int] = {}  # anchor -> nodes it stands for, once its node is complete
    stack: list[_Frame] = []
    nodes = 0
    for event in yaml.parse(text, Loader=_EVENTS_LOADER):
        if isinstance(event, yaml.MappingEndEvent | yaml.SequenceEndEvent):
            frame = stack.pop()
            if frame.anchor is not None:
                sizes[frame.anchor] = nodes - frame.nodes_before
            continue
        if not isinstance(event, yaml.NodeEvent):
            continue
        parent = stack[-1] if stack else None
        path = parent.child_path() if parent else ""
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            if event.anchor not in sizes and any(f.anchor == event.anchor for f in stack):
                raise ConfigError(source, line, path, f"alias *{event.anchor} refers to a node that contains it")
            nodes += sizes.get(event.anchor, 1)
        else:
            nodes += 1
            if isinstance(event, yaml.ScalarEvent):
                if event.anchor is not None:
                    sizes[event.anchor] = 1
            else:
                stack.append(_Frame(path, event.anchor, nodes - 1, isinstance(event, yaml.MappingStartEvent)))
                if len(stack) > max_depth:
                    raise ConfigError(source, line, path, f"nested deeper than {max_depth} levels")
        if nodes > max_nodes:
            raise ConfigError(source, line, path, f"more than {max_nodes} values once aliases are expanded "
                                                  "(an alias bomb?)")
        if parent is not None:
            parent.advance(event)


def read_text(path: str | Path, max_bytes: int = MAX_FILE_BYTES) -> str:
    """A config file's text, refusing files over `max_bytes` without reading them whole, and FIFOs or devices."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)  # a FIFO opens at once instead of waiting
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(str(path), None, "", "not a regular file")
    with open(fd, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ConfigError(str(path), None, "", f"larger than {max_bytes} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise ConfigError(str(path), line, "", f"not UTF-8 text (byte {exc.start})") from None


def load_located(text: str, source: str) -> Located:
    """Parse YAML text into a Located tree; syntax errors and hostile sizes become ConfigError with a line."""
    if len(text) > MAX_FILE_BYTES:
        raise ConfigError(source, None, "", f"larger than {MAX_FILE_BYTES} bytes")
    try:
        check_bounds(text, source)
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise ConfigError(source, line, "", f"invalid YAML: {exc.problem or exc.context}") from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow: NUL, other controls
        line = text.count("\n", 0, max(exc.position, 0)) + 1
        code = exc.character if isinstance(exc.character, int) else ord(str(exc.character)[:1] or "\0")
        raise ConfigError(source, line, "", f"invalid YAML: character U+{code:04X} is not allowed") from None
    except (yaml.YAMLError, RecursionError, UnicodeError) as exc:
        raise ConfigError(source, None, "", f"invalid YAML: {_first_line(exc)}") from None
    if node is None:
        return Located({}, source, 1, "")
    # A loader on an empty stream is only used for its scalar resolution rules.
    return _convert(node, source, "", yaml.SafeLoader(""))


class Section:
    """Reads the keys of one YAML mapping; `finish()` rejects keys nobody asked for."""

    def __init__(self, located: Located) -> None:
        if not isinstance(located.value, dict):
            raise located.error(f"expected a mapping, got {_describe(located.value)}")
        self._located = located
        self._items: dict[str, Located] = located.value
        self._seen: set[str] = set()

    @property
    def located(self) -> Located:
        return self._located

    def has(self, key: str) -> bool:
        self._seen.add(key)
        return key in self._items and self._items[key].value is not None

    def raw(self, key: str) -> Located | None:
        self._seen.add(key)
        item = self._items.get(key)
        return item if item is not None and item.value is not None else None

    def missing(self, key: str, message: str = "is required") -> ConfigError:
        return ConfigError(self._located.source, self._located.line, _child_path(self._located.path, key), message)

    def section(self, key: str, required: bool = False) -> Section | None:
        item = self.raw(key)
        if item is None:
            if required:
                raise self.missing(key)
            return None
        return Section(item)

    def string(self, key: str, default: str | None = None, required: bool = False,
               choices: tuple[str, ...] | None = None) -> str | None:
        item = self.raw(key)
        if item is None:
            if required:
                raise self.missing(key)
            return default
        value = item.value
        if isinstance(value, int | float) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise item.error(f"expected a string, got {_describe(value)}")
        if choices is not None and value not in choices:
            raise item.error(f'unknown value "{value}"{suggest(value, choices)} (known: {", ".join(choices)})')
        return value

    def number(self, key: str, default: float | None = None, required: bool = False,
               minimum: float | None = None, maximum: float | None = None,
               exclusive_minimum: bool = False) -> float | None:
        item = self.raw(key)
        if item is None:
            if required:
                raise self.missing(key)
            return default
        return check_number(item, minimum, maximum, exclusive_minimum)

    def boolean(self, key: str, default: bool) -> bool:
        item = self.raw(key)
        if item is None:
            return default
        if not isinstance(item.value, bool):
            raise item.error(f"expected true or false, got {_describe(item.value)}")
        return item.value

    def items(self, key: str) -> list[Located]:
        item = self.raw(key)
        if item is None:
            return []
        if not isinstance(item.value, list):
            raise item.error(f"expected a list, got {_describe(item.value)}")
        return item.value

    def string_map(self, key: str) -> dict[str, str]:
        item = self.raw(key)
        if item is None:
            return {}
        if not isinstance(item.value, dict):
            raise item.error(f"expected a mapping of strings, got {_describe(item.value)}")
        out = {}
        for name, value in item.value.items():
            if not isinstance(value.value, str | int | float) or isinstance(value.value, bool):
                raise value.error(f"expected a string, got {_describe(value.value)}")
            out[name] = str(value.value)
        return out

    def finish(self) -> None:
        for key, item in self._items.items():
            if key not in self._seen:
                known = sorted(self._seen)
                raise ConfigError(item.source, item.line, item.path,
                                  f"unknown key{suggest(key, known)} (known: {', '.join(known)})")

    def __iter__(self) -> Iterator[tuple[str, Located]]:
        self._seen.update(self._items)
        return iter(self._items.items())


def check_number(item: Located, minimum: float | None = None, maximum: float | None = None,
                 exclusive_minimum: bool = False) -> float:
    value = item.value
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise item.error(f"expected a number, got {_describe(value)}")
    if value != value or value in (float("inf"), float("-inf")):
        raise item.error("expected a finite number")
    if minimum is not None:
        if exclusive_minimum and value <= minimum:
            raise item.error(f"must be greater than {minimum:g}, got {value:g}")
        if not exclusive_minimum and value < minimum:
            raise item.error(f"must be at least {minimum:g}, got {value:g}")
    if maximum is not None and value > maximum:
        raise item.error(f"must be at most {maximum:g}, got {value:g}")
    return float(value)


def suggest(word: str, known: list[str] | tuple[str, ...]) -> str:
    """A ` (did you mean "x"?)` hint for a misspelt key or value, or nothing."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""
