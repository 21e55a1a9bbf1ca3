"""Keep secrets out of error messages and logs: URL query strings, credentials in URLs, header values.

Exec URLs carry the command (and the environment given to it) in their query string, and OTLP endpoints and
proxies may carry keys in theirs or in their user part, so any text that may quote a URL or a header (an
exception's message, above all a connection error's) goes through :func:`redact` before it is shown.
"""

from __future__ import annotations

import re

# scheme://user:password@ -> scheme://
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^/\s@'\"<>]*@")
# a query string (after a path or host): everything from "?" to the next space or quote
_QUERY = re.compile(r"(?<=[^\s'\"(<\[{=:,])\?[^\s'\"<>)\]}]+")
# header-like "Name: value" / "name=value" for the usual credential headers
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|cookie|set-cookie|x-api-key|api[-_]?key|x-auth-token|"
    r"x-honeycomb-team|dd-api-key|signoz-access-token|x-scope-orgid)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",;}]+"
    r"(?:\s+[^\s'\",;}]+)?"
)
REDACTED = "<redacted>"


def redact(text: str) -> str:
    """``text`` with URL credentials, query strings and credential header values replaced."""
    text = _USERINFO.sub(r"\1", text)
    text = _QUERY.sub("?" + REDACTED, text)
    return _HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", text)
