"""Helpers of the tests against the real control plane (tests/e2e/controlplane): comparing what the real API
server and the emulator answer, and running the operator as the Helm chart's ServiceAccount."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from kubernetes import client


def answer(call: Callable[[], Any], namespace: str = "") -> dict[str, Any]:
    """What the API server answered ``call()``: ``{"accepted": True}``, or the refusal's code, reason,
    message and causes (field, message), sorted, with ``namespace`` replaced by ``NS`` (the real server and
    the emulator are compared in namespaces of different names)."""
    try:
        call()
    except client.ApiException as exc:
        status = json.loads(exc.body)
        causes = sorted(
            (cause.get("field", ""), cause.get("message", ""))
            for cause in (status.get("details") or {}).get("causes", [])
        )
        message = str(status["message"])
        return {
            "code": status["code"],
            "reason": status["reason"],
            "message": message.replace(namespace, "NS") if namespace else message,
            "causes": causes,
        }
    return {"accepted": True}
