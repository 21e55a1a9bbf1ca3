"""The operator's API layer: kopf's private client API it relies on is still there (else a clear failure),
and how long a failing reconcile waits before its retry."""

from __future__ import annotations

import types

import pytest

from leap0_operator import k8s
from leap0_operator.runtime import MAX_RETRY_DELAY_S, retry_delay


def test_the_installed_kopf_still_has_the_private_client_api_the_operator_uses() -> None:
    # If this fails after a kopf upgrade: kopf moved kopf._cogs.clients; see leap0_operator/k8s.py.
    k8s.check_kopf_private_api()


def test_a_moved_private_api_fails_loudly_naming_what_moved(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "_kopf_api", types.SimpleNamespace())
    with pytest.raises(k8s.KopfPrivateApiMoved, match=r"kopf\._cogs\.clients\.api\.request is gone"):
        k8s.check_kopf_private_api()

    async def request(method: str, url: str, *, settings: object, logger: object) -> None: ...

    monkeypatch.setattr(k8s, "_kopf_api", types.SimpleNamespace(request=request))
    with pytest.raises(k8s.KopfPrivateApiMoved, match="lost its parameters payload, headers, backoffs"):
        k8s.check_kopf_private_api()


def test_a_missing_error_class_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(k8s, "_kopf_errors", types.SimpleNamespace())
    with pytest.raises(k8s.KopfPrivateApiMoved, match=r"errors\.APIError is gone"):
        k8s.check_kopf_private_api()


def test_retry_after_is_the_servers_when_it_gives_one() -> None:
    assert k8s.retry_after({"Retry-After": "7"}, 5.0) == 7.0
    assert k8s.retry_after({"Retry-After": "soon"}, 5.0) == 5.0
    assert k8s.retry_after({}, 5.0) == 5.0
    assert k8s.retry_after(None, 5.0) == 5.0


def test_repeated_temporary_errors_back_off_up_to_a_bound() -> None:
    assert [retry_delay(5, attempt) for attempt in range(1, 6)] == [5, 10, 20, 40, MAX_RETRY_DELAY_S]
    assert retry_delay(5, 50) == MAX_RETRY_DELAY_S
    assert retry_delay(120, 3) == 120  # a server asking for longer than the bound is obeyed
    assert retry_delay(None, 1) == 0


@pytest.mark.parametrize(
    ("status", "message", "reason"),
    [
        (422, 'Pod "s" is invalid: spec.containers[0].image: Required value', "InvalidSpec"),
        (400, "the body of the request was in an unknown format", "InvalidSpec"),
        (
            403,
            'pods "s" is forbidden: violates PodSecurity "restricted:latest": allowPrivilegeEscalation != '
            "false",
            "PodSecurityViolation",
        ),
        # Other 403s may pass later: a Role still rolling out, a quota freed by another sandbox.
        (403, 'pods is forbidden: User "system:serviceaccount:x:y" cannot create resource "pods"', None),
        (403, 'pods "s" is forbidden: exceeded quota: compute, requested: limits.cpu=2', None),
        (409, "AlreadyExists", None),
        (500, "etcdserver: request timed out", None),
        (None, "connection refused", None),
    ],
)
def test_only_invalid_objects_and_pod_security_refusals_are_final(
    status: int | None, message: str, reason: str | None
) -> None:
    assert k8s.refusal_reason(status, message) == reason
