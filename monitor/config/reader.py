"""A checked reader over one mapping of a YAML document, for `monitor.config`.

Each getter validates one key and remembers it was read; `done()` then rejects every key nobody read, so
a misspelt option fails the start instead of being ignored. Errors name the full key path and the value.
"""

from __future__ import annotations

from typing import Any


class Invalid(Exception):
    pass


class Section:
    """A mapping being read: each getter checks one key, `done()` rejects keys nobody read."""

    def __init__(self, doc: Any, path: str, source: str) -> None:
        if doc is None:
            doc = {}
        if not isinstance(doc, dict):
            raise Invalid(f"{path or '(top level)'}: must be a mapping, got {show(doc)}")
        self.doc, self.path, self.source, self.read = doc, path, source, set()

    def path_of(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def get(self, key: str, default: Any) -> Any:
        self.read.add(key)
        return self.doc.get(key, default)

    def section(self, key: str) -> Section:
        return Section(self.get(key, {}), self.path_of(key), self.source)

    def integer(self, key: str, default: int, minimum: int, maximum: int | None = None) -> int:
        value = self.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, int)
        if bad or value < minimum or (maximum is not None and value > maximum):
            limit = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise Invalid(f"{self.path_of(key)}: must be an integer {limit}, got {show(value)}")
        return value

    def number(self, key: str, default: float, minimum: float, maximum: float | None = None) -> float:
        value = self.get(key, default)
        bad = isinstance(value, bool) or not isinstance(value, int | float)
        if bad or value < minimum or (maximum is not None and value > maximum):
            limit = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"
            raise Invalid(f"{self.path_of(key)}: must be a number {limit}, got {show(value)}")
        return float(value)

    def text(self, key: str, default: str | None, choices: tuple[str, ...] = ()) -> Any:
        value = self.get(key, default)
        if value is None and default is None:
            return None
        if not isinstance(value, str) or not value:
            raise Invalid(f"{self.path_of(key)}: must be a non-empty string, got {show(value)}")
        if choices and value not in choices:
            raise Invalid(f"{self.path_of(key)}: must be one of {', '.join(choices)}, got {show(value)}")
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self.get(key, default)
        if not isinstance(value, bool):
            raise Invalid(f"{self.path_of(key)}: must be true or false, got {show(value)}")
        return value

    def names(self, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
        value = self.get(key, list(default))
        if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
            raise Invalid(f"{self.path_of(key)}: must be a non-empty list of strings, got {show(value)}")
        if len(set(value)) != len(value):
            raise Invalid(f"{self.path_of(key)}: has duplicates, got {show(value)}")
        return tuple(value)

    def done(self) -> None:
        unknown = sorted(set(self.doc) - self.read, key=str)
        if unknown:
            raise Invalid(f"{self.path_of(str(unknown[0]))}: unknown key (known: {', '.join(sorted(self.read))})")


def show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict | list):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    return repr(value) if value is not None else "null"
