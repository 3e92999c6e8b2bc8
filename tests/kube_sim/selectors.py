"""Label and field selectors, parsed as the API server parses them.

Labels: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k``, ``!k``.
Fields: ``path=value``, ``path==value``, ``path!=value`` on dotted paths such as
``metadata.name`` or ``involvedObject.kind``. A selector the server cannot parse is a
400 BadRequest.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .model import ApiError

Match = Callable[[dict], bool]


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside parentheses."""
    parts, depth, current = [], 0, ""
    for char in selector:
        depth += char == "("
        depth -= char == ")"
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def label_matcher(selector: str | None) -> Match:
    if not selector:
        return lambda obj: True
    tests = []
    for term in _split(selector):
        if match := re.fullmatch(r"([\w./-]+)\s*(==|=|!=)\s*([\w.-]*)", term):
            key, op, value = match.groups()
            tests.append(_label_equals(key, value, op != "!="))
        elif match := re.fullmatch(r"([\w./-]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            key, op, values = match.groups()
            wanted = {v.strip() for v in values.split(",")}
            tests.append(_label_in(key, wanted, op == "in"))
        elif match := re.fullmatch(r"(!?)([\w./-]+)", term):
            negate, key = match.groups()
            tests.append(_label_exists(key, not negate))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")

    def matches(obj: dict) -> bool:
        labels = obj.get("metadata", {}).get("labels") or {}
        return all(test(labels) for test in tests)

    return matches


def _label_equals(key: str, value: str, equal: bool):
    return lambda labels: (labels.get(key) == value) == equal


def _label_in(key: str, wanted: set[str], inside: bool):
    return lambda labels: (labels.get(key) in wanted) if inside else labels.get(key) not in wanted


def _label_exists(key: str, present: bool):
    return lambda labels: (key in labels) == present


def field_matcher(selector: str | None) -> Match:
    if not selector:
        return lambda obj: True
    tests = []
    for term in _split(selector):
        match = re.fullmatch(r"([\w.]+)\s*(==|=|!=)\s*(.*)", term)
        if not match:
            raise ApiError(400, "BadRequest", f"invalid selector: '{selector}'; can't "
                           f"understand '{term}'")
        path, op, value = match.groups()
        tests.append((path.split("."), value, op != "!="))

    def matches(obj: dict) -> bool:
        for path, value, equal in tests:
            found: object = obj
            for key in path:
                found = found.get(key) if isinstance(found, dict) else None
            if (str(found if found is not None else "") == value) != equal:
                return False
        return True

    return matches
