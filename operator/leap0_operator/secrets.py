"""Which Secrets a sandbox pod may reference (pure: plain data in, a verdict out).

The operator creates pods with its own rights, so a ``valueFrom.secretKeyRef`` in a Sandbox's env would give
the sandbox any Secret of the namespace: a confused deputy. A Secret may be referenced only when

- it is owned by the Sandbox (an ``ownerReference`` with the Sandbox's uid: the SDK's ``otel_export``
  Secret), or
- its owner marked it for sandboxes: the label ``leap0.dev/sandbox-env: "true"``.

The rule covers the env of the template too (a template's author marks the Secrets it shares the same way);
the operator's own ``--default-otlp-secret`` is an admin's setting and is not checked. The controller reads
only the metadata of the Secrets named (``PartialObjectMetadata``: never their data) when it is about to
create a pod, and passes it here. A Secret that does not exist yet keeps the Sandbox waiting (an SDK creates
its Secret right after the Sandbox); an ``optional`` reference to a missing Secret is fine, as for the
kubelet.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import leap0_contract as contract

from . import objects


@dataclasses.dataclass(frozen=True)
class SecretRef:
    """One ``valueFrom.secretKeyRef`` of the pod's env."""

    var: str  # the env var's name
    secret: str  # the Secret's name
    optional: bool = False


@dataclasses.dataclass(frozen=True)
class Verdict:
    """``refused``: references the Sandbox may never have (Failed); ``missing``: Secrets that do not exist
    yet (wait). Both empty: the pod may be created."""

    refused: tuple[SecretRef, ...] = ()
    missing: tuple[SecretRef, ...] = ()

    @property
    def allowed(self) -> bool:
        return not self.refused and not self.missing


def secret_refs(env: Sequence[Mapping[str, Any]]) -> list[SecretRef]:
    """The ``secretKeyRef`` references of an env list, in order."""
    refs: list[SecretRef] = []
    for var in env:
        ref = objects.section(objects.section(var, "valueFrom"), "secretKeyRef")
        if ref.get("name"):
            refs.append(SecretRef(str(var.get("name")), str(ref["name"]), ref.get("optional") is True))
    return refs


def may_reference(secret: Mapping[str, Any], sandbox_uid: str | None) -> bool:
    """A Secret (its metadata) owned by the Sandbox, or labelled ``leap0.dev/sandbox-env: "true"``."""
    if objects.labels(secret).get(contract.LABEL_SANDBOX_ENV) == contract.SANDBOX_ENV_ALLOWED:
        return True
    owners = objects.items(objects.metadata(secret), "ownerReferences")
    return sandbox_uid is not None and any(str(ref.get("uid")) == sandbox_uid for ref in owners)


def check(
    refs: Sequence[SecretRef], found: Mapping[str, Mapping[str, Any] | None], sandbox_uid: str | None
) -> Verdict:
    """Judge each reference against the Secrets' metadata ``found`` (name → metadata object, None when the
    Secret does not exist)."""
    refused: list[SecretRef] = []
    missing: list[SecretRef] = []
    for ref in refs:
        secret = found.get(ref.secret)
        if secret is None:
            if not ref.optional:
                missing.append(ref)
        elif not may_reference(secret, sandbox_uid):
            refused.append(ref)
    return Verdict(tuple(refused), tuple(missing))


def _names(refs: Sequence[SecretRef]) -> str:
    return ", ".join(f'{ref.var} (Secret "{ref.secret}")' for ref in refs)


def refused_message(refs: Sequence[SecretRef]) -> str:
    return (
        f"env {_names(refs)}: a sandbox may reference only a Secret owned by its Sandbox or labelled "
        f'{contract.LABEL_SANDBOX_ENV}: "{contract.SANDBOX_ENV_ALLOWED}" by its owner; no pod was created '
        "(label the Secret if every sandbox of the namespace may read it, then create the Sandbox again)"
    )


def missing_message(refs: Sequence[SecretRef]) -> str:
    return f"waiting for env {_names(refs)} to exist; the pod is created once it does"


def missing_timeout_message(refs: Sequence[SecretRef], seconds: int) -> str:
    return (
        f"env {_names(refs)} still did not exist {seconds} s after the Sandbox was created; "
        "no pod was created"
    )
