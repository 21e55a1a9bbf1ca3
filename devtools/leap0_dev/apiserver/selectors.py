"""Label and field selectors, parsed and matched as the API server does. Pure functions."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

Matcher = Callable[[Mapping[str, Any]], bool]


class SelectorError(ValueError):
    """A selector that the API server would answer with 400 BadRequest."""


_REQ = re.compile(
    r"""\s*(?:
        (?P<notexists>!\s*(?P<nkey>[^\s,!=()]+))
      | (?P<key>[^\s,!=()]+)\s*(?:
            (?P<op>==|=|!=)\s*(?P<value>[^\s,!=()]*)
          | \s(?P<setop>in|notin)\s*\((?P<values>[^()]*)\)
        )?
    )\s*(?:,|$)""",
    re.VERBOSE,
)


def _label_requirements(selector: str) -> list[tuple[str, str, frozenset[str]]]:
    """Parse a label selector into (key, operator, values) triples."""
    reqs: list[tuple[str, str, frozenset[str]]] = []
    pos = 0
    text = selector.strip()
    while pos < len(text):
        m = _REQ.match(text, pos)
        if m is None or m.end() == pos:
            raise SelectorError(f"unable to parse requirement: {text[pos:]!r} in label selector {selector!r}")
        pos = m.end()
        if m.group("notexists"):
            reqs.append((m.group("nkey"), "!exists", frozenset()))
        elif m.group("op"):
            op = "!=" if m.group("op") == "!=" else "="
            reqs.append((m.group("key"), op, frozenset([m.group("value")])))
        elif m.group("setop"):
            values = frozenset(v.strip() for v in m.group("values").split(",") if v.strip())
            if not values:
                raise SelectorError(f"for 'in', 'notin' operators, values set can't be empty: {selector!r}")
            reqs.append((m.group("key"), m.group("setop"), values))
        else:
            reqs.append((m.group("key"), "exists", frozenset()))
    return reqs


def label_matcher(selector: str | None) -> Matcher | None:
    """A predicate over an object's labels, or None when the selector selects everything."""
    if not selector or not selector.strip():
        return None
    reqs = _label_requirements(selector)

    def match(labels: Mapping[str, Any]) -> bool:
        for key, op, values in reqs:
            present = key in labels
            value = labels.get(key)
            if op == "exists" and not present:
                return False
            if op == "!exists" and present:
                return False
            if op in ("=", "in") and (not present or value not in values):
                return False
            if op in ("!=", "notin") and present and value in values:
                return False
        return True

    return match


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    node: Any = obj
    for part in path.split("."):
        if not isinstance(node, Mapping):
            return ""
        node = node.get(part)
    if node is None:
        return ""
    if isinstance(node, bool):
        return "true" if node else "false"
    return str(node)


def field_matcher(selector: str | None, supported: tuple[str, ...]) -> Matcher | None:
    """A predicate over a whole object, or None when the selector selects everything.

    Only ``metadata.name``, ``metadata.namespace`` and the resource's own field labels are accepted, like the
    API server (others are a 400 "field label not supported").
    """
    if not selector or not selector.strip():
        return None
    allowed = {"metadata.name", "metadata.namespace", *supported}
    reqs: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        part = part.strip()
        if not part:
            continue
        m = re.fullmatch(r"([^=!\s]+)\s*(==|=|!=)\s*(.*)", part)
        if m is None:
            raise SelectorError(f"invalid field selector: {part!r}")
        key, op, value = m.group(1), m.group(2), m.group(3).strip()
        if key not in allowed:
            raise SelectorError(f'field label not supported: "{key}"')
        reqs.append((key, op == "!=", value))

    def match(obj: Mapping[str, Any]) -> bool:
        return all((_lookup(obj, key) == value) != negate for key, negate, value in reqs)

    return match
