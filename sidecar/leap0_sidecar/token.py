"""The sidecar's bearer token for the platform's collector: a projected ServiceAccount token file.

The operator mounts a token of its own audience in the sidecar container only (``LEAP0_TELEMETRY_TOKEN_FILE``)
when the sidecar exports to the platform's destination; the collector verifies it against the API server's
issuer and takes the pod's identity from it (docs/security.md). The kubelet renews the file before it expires
(an atomic swap of the volume's ``..data`` link), so it is read again whenever it changed: one ``stat`` per
request. Bounded: a file over 16 KiB, or one with characters a header cannot carry, is not sent (logged once).
"""

from __future__ import annotations

import logging
import os
from typing import Final

logger = logging.getLogger("leap0_sidecar")

MAX_TOKEN_BYTES: Final = 16 * 1024


class BearerToken:
    """``Authorization: Bearer <token>`` from a file, for each request."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._seen: tuple[int, int, int] | None = None
        self._line = b""
        self._complained = False

    def _complain(self, why: str) -> None:
        if not self._complained:  # once per run of failures, never the token itself
            logger.warning("bearer token %s: %s; requests go without it", self.path, why)
            self._complained = True

    def header_line(self) -> bytes:
        """The header line (with its CRLF), or nothing when the file cannot be used."""
        try:
            info = os.stat(self.path)
        except OSError as exc:
            self._seen, self._line = None, b""
            self._complain(exc.strerror or "cannot be read")
            return b""
        key = (info.st_ino, info.st_mtime_ns, info.st_size)
        if key == self._seen:
            return self._line
        self._seen, self._line = key, b""
        if info.st_size > MAX_TOKEN_BYTES:
            self._complain(f"larger than {MAX_TOKEN_BYTES} bytes")
            return b""
        try:
            with open(self.path, "rb") as file:
                token = file.read(MAX_TOKEN_BYTES + 1).strip()
        except OSError as exc:
            self._complain(exc.strerror or "cannot be read")
            return b""
        if not token or len(token) > MAX_TOKEN_BYTES or any(b < 0x21 or b > 0x7E for b in token):
            self._complain("empty, or not a token (only visible ASCII characters may be sent)")
            return b""
        self._complained = False
        self._line = b"authorization: Bearer " + token + b"\r\n"
        return self._line
