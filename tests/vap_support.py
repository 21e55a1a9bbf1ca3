"""A ValidatingAdmissionPolicy evaluator for tests: what kube-apiserver's admission decides for one request,
given the policy, its bindings, their parameter objects and the namespaces' labels.

The steps, as the API server takes them (Kubernetes 1.30, admissionregistration.k8s.io/v1): the policy's
``matchConstraints`` (resource rules: group, version, resource or ``resource/subresource``, operation), each
binding's ``matchResources`` (its namespace selector), the binding's ``paramRef`` (a missing parameter object
denies with ``parameterNotFoundAction: Deny``), the ``matchConditions`` (all must hold), then ``variables`` in
order and each validation; the first failing validation's ``messageExpression`` (else ``message``) is the
answer of every binding whose ``validationActions`` include ``Deny``. The first denying binding's is what the
client gets (:func:`answer`): its validation's ``reason`` (``Invalid`` when unset; a missing parameter object
is ``Invalid`` too) and code, in the message kube-apiserver writes. CEL runs on Google's cel-cpp
(cel-expr-python, as the emulator uses) with the strings extension Kubernetes enables. Pure: plain dicts in,
denials out. Checked against kube-apiserver 1.36 by tests/e2e/controlplane/test_tenancy_e2e.py (the
differences it found: docs/emulator-fidelity.md).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

from cel_expr_python import cel
from cel_expr_python.ext import ext_strings

_VARIABLES = ("object", "oldObject", "request", "params", "namespaceObject", "variables")


def _env() -> Any:
    return cel.NewEnv(
        variables=dict.fromkeys(_VARIABLES, cel.Type.DYN), extensions=[ext_strings.ExtStrings()]
    )


def _plain(value: Any) -> Any:
    """A CEL result as plain Python values (lists and maps hold accessors), to pass on as a variable."""
    if hasattr(value, "plain_value"):
        value = value.plain_value()
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


def evaluate(expression: str, activation: Mapping[str, Any]) -> Any:
    """One CEL expression's value; AssertionError (with the expression) when it does not compile or fails."""
    try:
        program = _env().compile(expression)
        result = program.eval(data={k: v for k, v in activation.items() if v is not None})
    except RuntimeError as exc:
        raise AssertionError(f"CEL error in {expression!r}: {exc}") from None
    if result.type() == cel.Type.ERROR:
        raise AssertionError(f"CEL error in {expression!r}: {result.value()}")
    return _plain(result.value())


@dataclasses.dataclass(frozen=True)
class Request:
    """An admission request: the operation, the kind and resource (``sandboxes``, ``sandboxes/status``...),
    its namespace, the object and (UPDATE) the old object."""

    operation: str
    kind: str
    resource: str
    namespace: str
    object: Mapping[str, Any] | None
    old_object: Mapping[str, Any] | None = None
    group: str = "leap0.dev"
    version: str = "v1alpha1"

    def cel(self) -> dict[str, Any]:
        resource, _, subresource = self.resource.partition("/")
        return {
            "operation": self.operation,
            "kind": {"group": self.group, "version": self.version, "kind": self.kind},
            "resource": {"group": self.group, "version": self.version, "resource": resource},
            "subResource": subresource,
            "namespace": self.namespace,
            "name": str((self.object or self.old_object or {}).get("metadata", {}).get("name", "")),
        }


def _rule_matches(rule: Mapping[str, Any], request: Request) -> bool:
    def has(values: Sequence[str], value: str) -> bool:
        return "*" in values or value in values

    return (
        has(rule.get("apiGroups", []), request.group)
        and has(rule.get("apiVersions", []), request.version)
        and has(rule.get("operations", []), request.operation)
        and request.resource in rule.get("resources", [])
    )


def _selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    if selector is None:
        return True
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and labels.get(key) in values):
            return False
        if (op == "Exists" and key not in labels) or (op == "DoesNotExist" and key in labels):
            return False
    return True


# The HTTP code of each reason a validation may give (metav1.StatusReason; Invalid when it gives none).
CODES = {"Unauthorized": 401, "Forbidden": 403, "Invalid": 422, "RequestEntityTooLarge": 413}
NO_PARAMS = (
    "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction"
)


@dataclasses.dataclass(frozen=True)
class Denial:
    """One binding's denial: its name, the policy's message, the validation's reason."""

    binding: str
    message: str
    reason: str = "Invalid"


def denials(
    policies: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    params: Mapping[tuple[str, str], Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    request: Request,
) -> list[str]:
    """The messages of every binding of ``policies`` that denies ``request`` (empty: admitted). ``params``
    holds the parameter objects by (namespace, name); ``namespace_labels`` each namespace's labels (its
    ``kubernetes.io/metadata.name`` is added as the API server does)."""
    return [d.message for _, d in _all(policies, bindings, params, namespace_labels, request)]


def answer(
    policies: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    params: Mapping[tuple[str, str], Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    request: Request,
) -> dict[str, Any]:
    """What the client gets: ``{"accepted": True}``, or the first denying binding's ``code``, ``reason`` and
    ``message`` as kube-apiserver words them (``sandboxes.leap0.dev "s" is forbidden:
    ValidatingAdmissionPolicy 'P' with binding 'B' denied request: ...``, whatever the reason)."""
    found = _all(policies, bindings, params, namespace_labels, request)
    if not found:
        return {"accepted": True}
    policy, first = found[0]
    name = str((request.object or request.old_object or {}).get("metadata", {}).get("name", ""))
    resource = request.resource.partition("/")[0]
    message = (
        f'{resource}.{request.group} "{name}" is forbidden: ValidatingAdmissionPolicy '
        f"'{policy['metadata']['name']}' with binding '{first.binding}' denied request: {first.message}"
    )
    return {"code": CODES[first.reason], "reason": first.reason, "message": message}


def _all(
    policies: Sequence[Mapping[str, Any]],
    bindings: Sequence[Mapping[str, Any]],
    params: Mapping[tuple[str, str], Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    request: Request,
) -> list[tuple[Mapping[str, Any], Denial]]:
    ordered = sorted(policies, key=lambda p: str(p["metadata"]["name"]))
    return [(p, d) for p in ordered for d in decide(p, bindings, params, namespace_labels, request)]


def decide(
    policy: Mapping[str, Any],
    bindings: Sequence[Mapping[str, Any]],
    params: Mapping[tuple[str, str], Mapping[str, Any]],
    namespace_labels: Mapping[str, Mapping[str, str]],
    request: Request,
) -> list[Denial]:
    """Every binding's denial of ``request``, in the bindings' order (empty: admitted)."""
    spec = policy["spec"]
    if not any(_rule_matches(r, request) for r in spec["matchConstraints"]["resourceRules"]):
        return []
    labels = {**namespace_labels.get(request.namespace, {}), "kubernetes.io/metadata.name": request.namespace}
    out: list[Denial] = []
    for binding in bindings:
        bspec = binding["spec"]
        if bspec["policyName"] != policy["metadata"]["name"]:
            continue
        if not _selector_matches(bspec.get("matchResources", {}).get("namespaceSelector"), labels):
            continue
        ref = bspec.get("paramRef")
        param = None
        if ref is not None:
            param = params.get((ref.get("namespace") or request.namespace, ref["name"]))
            if param is None:
                if ref.get("parameterNotFoundAction") == "Deny":
                    out.append(Denial(binding["metadata"]["name"], NO_PARAMS))
                continue
        activation: dict[str, Any] = {
            "object": request.object,
            "oldObject": request.old_object,
            "request": request.cel(),
            "params": param,
            "namespaceObject": {"metadata": {"name": request.namespace, "labels": labels}},
        }
        if not all(evaluate(c["expression"], activation) is True for c in spec.get("matchConditions", [])):
            continue
        variables: dict[str, Any] = {}
        for variable in spec.get("variables", []):
            variables[variable["name"]] = evaluate(
                variable["expression"], {**activation, "variables": variables}
            )
        activation["variables"] = variables
        for validation in spec.get("validations", []):
            if evaluate(validation["expression"], activation) is not True:
                message = validation.get("message") or f"failed expression: {validation['expression']}"
                if validation.get("messageExpression"):
                    message = str(evaluate(validation["messageExpression"], activation))
                if "Deny" in bspec.get("validationActions", []):
                    out.append(
                        Denial(binding["metadata"]["name"], message, validation.get("reason") or "Invalid")
                    )
                break
    return out
