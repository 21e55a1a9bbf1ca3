"""What the server does to an object before storing it: defaults of built-in kinds, the pod update rules, the
PersistentVolumeClaim rules (and its binding, as a default StorageClass's provisioner and the volume
controller would do it at once) and the CRD schema (pruning, types, CEL) of custom resources. Pure functions
over plain dicts."""

from __future__ import annotations

import base64
import ipaddress
import json
import re
from typing import Any

from leap0_dev.podspec import PodSpecError, parse_quantity

from .catalog import Resource
from .errors import ApiError, invalid

_DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
_DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
_LABEL_VALUE = re.compile(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?")


def validate_name(res: Resource, name: str) -> None:
    """Names are DNS subdomains (namespaces: DNS labels), as the server checks them."""
    label = res.key == ("", "namespaces")
    limit = 63 if label else 253
    pattern = _DNS_LABEL if label else _DNS_SUBDOMAIN
    if len(name) > limit or not pattern.fullmatch(name):
        what = "RFC 1123 label" if label else "RFC 1123 subdomain"
        raise invalid(
            res.kind,
            res.group,
            name,
            [
                (
                    "metadata.name",
                    "FieldValueInvalid",
                    f'Invalid value: "{name}": a lowercase {what} must consist of lower case alphanumeric '
                    "characters, '-' or '.', and must start and end with an alphanumeric character",
                )
            ],
        )


def validate_labels(res: Resource, name: str, obj: dict[str, Any]) -> None:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    if not isinstance(labels, dict):
        raise invalid(res.kind, res.group, name, [("metadata.labels", "FieldValueInvalid", "must be a map")])
    for key, value in labels.items():
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise invalid(
                res.kind,
                res.group,
                name,
                [
                    (
                        "metadata.labels",
                        "FieldValueInvalid",
                        f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                        "alphanumeric characters, '-', '_' or '.', and must start and end with an "
                        f"alphanumeric character (label {key!r})",
                    )
                ],
            )


def _qos(pod_spec: dict[str, Any]) -> str:
    containers = list(pod_spec.get("containers") or []) + list(pod_spec.get("initContainers") or [])
    requests_any = False
    guaranteed = bool(containers)
    for c in containers:
        res = c.get("resources") or {}
        limits, requests = res.get("limits") or {}, res.get("requests") or {}
        if limits or requests:
            requests_any = True
        for r in ("cpu", "memory"):
            if r not in limits or requests.get(r, limits.get(r)) != limits.get(r):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if requests_any else "BestEffort"


def default_on_create(res: Resource, obj: dict[str, Any]) -> dict[str, Any]:
    """Server-side defaults of the built-in kinds the product touches (a subset of the real ones)."""
    key = res.key
    if key == ("", "pods"):
        spec = dict(obj.get("spec") or {})
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        containers = []
        for c in spec.get("containers") or []:
            c = dict(c)
            image = str(c.get("image", ""))
            tagged_latest = ":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")
            c.setdefault(
                "imagePullPolicy", "Always" if tagged_latest and "@" not in image else "IfNotPresent"
            )
            c.setdefault("terminationMessagePath", "/dev/termination-log")
            c.setdefault("terminationMessagePolicy", "File")
            containers.append(c)
        spec["containers"] = containers
        obj = {**obj, "spec": spec, "status": {"phase": "Pending", "qosClass": _qos(spec)}}
    elif key == ("", "secrets"):
        obj = _secret_string_data(obj)
        obj.setdefault("type", "Opaque")
    elif key == CLAIM_KEY:
        obj = _bind_claim(obj)
    elif key == ("", "namespaces"):
        meta = dict(obj["metadata"])
        meta["labels"] = {**(meta.get("labels") or {}), "kubernetes.io/metadata.name": meta["name"]}
        obj = {**obj, "metadata": meta, "spec": {"finalizers": ["kubernetes"]}, "status": {"phase": "Active"}}
    return obj


def _secret_string_data(obj: dict[str, Any]) -> dict[str, Any]:
    string_data = obj.get("stringData")
    if not string_data:
        return {k: v for k, v in obj.items() if k != "stringData"}
    data = dict(obj.get("data") or {})
    for k, v in string_data.items():
        data[k] = base64.b64encode(str(v).encode()).decode()
    return {**{k: v for k, v in obj.items() if k != "stringData"}, "data": data}


# Pod spec fields an update may change (the rest is immutable on a real server).
_POD_MUTABLE = {"activeDeadlineSeconds", "tolerations", "terminationGracePeriodSeconds"}


def _pod_spec_shape(spec: dict[str, Any]) -> dict[str, Any]:
    shaped = {k: v for k, v in spec.items() if k not in _POD_MUTABLE}
    for field in ("containers", "initContainers"):
        if field in shaped:
            shaped[field] = [{k: v for k, v in c.items() if k != "image"} for c in shaped[field] or []]
    return shaped


def check_update(res: Resource, name: str, new: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """Rules of updates to built-in kinds: immutable pod spec, secret stringData folded into data."""
    if res.key == ("", "pods"):
        if _pod_spec_shape(new.get("spec") or {}) != _pod_spec_shape(old.get("spec") or {}):
            raise invalid(
                "Pod",
                "",
                name,
                [
                    (
                        "spec",
                        "FieldValueForbidden",
                        "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                        "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                        "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds`",
                    )
                ],
            )
    elif res.key == ("", "secrets"):
        new = _secret_string_data(new)
    elif res.key == CLAIM_KEY:
        raise_if(claim_update_errors(new, old), res, name)
    return new


# --- PersistentVolumeClaims -----------------------------------------------------------------------------
CLAIM_KEY = ("", "persistentvolumeclaims")
ACCESS_MODES = ("ReadOnlyMany", "ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")
VOLUME_MODES = ("Block", "Filesystem")
# The StorageClass a claim naming none gets (the DefaultStorageClass admission plugin, with a default class of
# this name, as kind and minikube have).
DEFAULT_STORAGE_CLASS = "standard"
_SUBDOMAIN_MESSAGE = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must "
    "start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    "'[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
)


def _supported(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def _storage(spec: dict[str, Any]) -> Any:
    return ((spec.get("resources") or {}).get("requests") or {}).get("storage")


def claim_errors(obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """kube-apiserver's ValidatePersistentVolumeClaimSpec: access modes (required, supported, ReadWriteOncePod
    alone), the storage request (required, positive), the storage class name (a DNS subdomain) and the volume
    mode."""
    spec = obj.get("spec") or {}
    errors: list[tuple[str, str, str]] = []
    modes = spec.get("accessModes") or []
    if not modes:
        errors.append(
            ("spec.accessModes", "FieldValueRequired", "Required value: at least 1 access mode is required")
        )
    for mode in modes:
        if mode not in ACCESS_MODES:
            errors.append(
                (
                    "spec.accessModes",
                    "FieldValueNotSupported",
                    f'Unsupported value: "{mode}": supported values: {_supported(ACCESS_MODES)}',
                )
            )
    if "ReadWriteOncePod" in modes and any(m != "ReadWriteOncePod" and m in ACCESS_MODES for m in modes):
        errors.append(
            (
                "spec.accessModes",
                "FieldValueForbidden",
                "Forbidden: may not use ReadWriteOncePod with other access modes",
            )
        )
    storage = _storage(spec)
    where = "spec.resources[storage]"
    if storage is None:
        errors.append((where, "FieldValueRequired", "Required value"))
    else:
        try:
            positive = parse_quantity(storage) > 0
        except PodSpecError:
            errors.append(
                (
                    where,
                    "FieldValueInvalid",
                    f'Invalid value: "{storage}": quantities must match the regular expression '
                    "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                )
            )
        else:
            if not positive:
                errors.append(
                    (where, "FieldValueInvalid", f'Invalid value: "{storage}": must be greater than zero')
                )
    storage_class = spec.get("storageClassName")
    if storage_class and (len(storage_class) > 253 or not _DNS_SUBDOMAIN.fullmatch(storage_class)):
        errors.append(
            (
                "spec.storageClassName",
                "FieldValueInvalid",
                f'Invalid value: "{storage_class}": {_SUBDOMAIN_MESSAGE}',
            )
        )
    mode = spec.get("volumeMode")
    if mode is not None and mode not in VOLUME_MODES:
        errors.append(
            (
                "spec.volumeMode",
                "FieldValueNotSupported",
                f'Unsupported value: "{mode}": supported values: {_supported(VOLUME_MODES)}',
            )
        )
    return errors


def _bind_claim(obj: dict[str, Any]) -> dict[str, Any]:
    """A valid claim, defaulted and bound at once: the default StorageClass when it names none, volume mode
    Filesystem, and a volume ``pvc-<uid>`` of the requested size (what a default class's provisioner and the
    volume controller do within seconds on a cluster). An invalid claim is refused (422)."""
    meta = obj["metadata"]
    raise_if_claim(claim_errors(obj), str(meta.get("name", "")))
    spec = dict(obj.get("spec") or {})
    spec.setdefault("volumeMode", "Filesystem")
    if spec.get("storageClassName") is None:
        spec["storageClassName"] = DEFAULT_STORAGE_CLASS
    spec["volumeName"] = spec.get("volumeName") or f"pvc-{meta['uid']}"
    annotations = {
        **(meta.get("annotations") or {}),
        "pv.kubernetes.io/bind-completed": "yes",
        "pv.kubernetes.io/bound-by-controller": "yes",
    }
    status = {
        "phase": "Bound",
        "accessModes": list(spec.get("accessModes") or []),
        "capacity": {"storage": _storage(spec)},
    }
    return {**obj, "metadata": {**meta, "annotations": annotations}, "spec": spec, "status": status}


def raise_if_claim(errors: list[tuple[str, str, str]], name: str) -> None:
    if errors:
        raise invalid("PersistentVolumeClaim", "", name, errors)


def claim_update_errors(new: dict[str, Any], old: dict[str, Any]) -> list[tuple[str, str, str]]:
    """kube-apiserver's ValidatePersistentVolumeClaimUpdate: the spec is immutable but for a bound claim's
    storage request (which may grow, never go below its capacity) and a first volumeName."""
    errors = claim_errors(new)
    new_spec, old_spec = dict(new.get("spec") or {}), dict(old.get("spec") or {})
    if not old_spec.get("volumeName"):
        old_spec["volumeName"] = new_spec.get("volumeName")
    bound = (old.get("status") or {}).get("phase") == "Bound"

    def shaped(spec: dict[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in spec.items() if k != "volumeAttributesClassName"}
        if bound:
            requests = dict((out.get("resources") or {}).get("requests") or {})
            requests.pop("storage", None)
            out["resources"] = {**(out.get("resources") or {}), "requests": requests}
        return out

    if shaped(new_spec) != shaped(old_spec):
        errors.append(
            (
                "spec",
                "FieldValueForbidden",
                "Forbidden: spec is immutable after creation except resources.requests and "
                "volumeAttributesClassName for bound claims",
            )
        )
    try:
        new_size = parse_quantity(_storage(new_spec) or 0)
        old_size = parse_quantity(_storage(old_spec) or 0)
        capacity = parse_quantity(((old.get("status") or {}).get("capacity") or {}).get("storage") or 0)
    except PodSpecError:
        return errors
    if new_size < old_size and new_size <= capacity:
        errors.append(
            (
                "spec.resources.requests.storage",
                "FieldValueForbidden",
                "Forbidden: field can not be less than status.capacity",
            )
        )
    return errors


def check_crd(obj: dict[str, Any]) -> None:
    """The few CustomResourceDefinition rules the server needs to serve it."""
    name = obj["metadata"]["name"]
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[tuple[str, str, str]] = []
    if not spec.get("group"):
        causes.append(("spec.group", "FieldValueRequired", "Required value"))
    if not names.get("plural") or not names.get("kind"):
        causes.append(("spec.names", "FieldValueRequired", "Required value: plural and kind"))
    elif name != f"{names['plural']}.{spec.get('group')}":
        causes.append(
            (
                "metadata.name",
                "FieldValueInvalid",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    if not spec.get("versions"):
        causes.append(
            ("spec.versions", "FieldValueRequired", "Required value: must have at least one version")
        )
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            ("spec.scope", "FieldValueNotSupported", 'Unsupported value: must be "Namespaced" or "Cluster"')
        )
    if causes:
        raise invalid("CustomResourceDefinition", "apiextensions.k8s.io", name, causes)


def crd_status(obj: dict[str, Any], now: str) -> dict[str, Any]:
    """An accepted, established CRD's status."""
    spec = obj.get("spec") or {}
    conditions = [
        {"type": t, "status": "True", "reason": r, "message": m, "lastTransitionTime": now}
        for t, r, m in (
            ("NamesAccepted", "NoConflicts", "no conflicts found"),
            ("Established", "InitialNamesAccepted", "the initial names have been accepted"),
        )
    ]
    return {
        "acceptedNames": spec.get("names") or {},
        "conditions": conditions,
        "storedVersions": [v["name"] for v in spec.get("versions") or [] if v.get("storage")],
    }


_NETWORK_POLICIES = ("networking.k8s.io", "networkpolicies")
_LEADING_ZERO = re.compile(r"(^|[.:])0[0-9]")


def _cidr_errors(path: str, value: Any) -> tuple[Any, list[tuple[str, str, str]]]:
    """A CIDR of a legacy field under strict validation (Kubernetes 1.36's IsValidCIDRForLegacyField with
    StrictIPCIDRValidation): the network it parses to (None when it does not) and the errors."""
    shown = f"Invalid value: {_go_string(value)}"
    try:
        network = ipaddress.ip_network(value, strict=False)
    except (TypeError, ValueError):
        if isinstance(value, str) and _LEADING_ZERO.search(value.split("/")[0]):
            return None, [
                (path, "FieldValueInvalid", f"{shown}: must not have leading 0s in IP or prefix length")
            ]
        example = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"
        return None, [(path, "FieldValueInvalid", f"{shown}: {example}")]
    if isinstance(network, ipaddress.IPv6Network) and network.network_address.ipv4_mapped is not None:
        return network, [(path, "FieldValueInvalid", f"{shown}: must not have an IPv4-mapped IPv6 address")]
    if str(network.network_address) != str(ipaddress.ip_interface(value).ip):
        return network, [
            (path, "FieldValueInvalid", f"{shown}: must not have bits set beyond the prefix length")
        ]
    return network, []


def _go_string(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value)


def _ip_block_errors(path: str, block: Any) -> list[tuple[str, str, str]]:
    """ValidateIPBlock: a valid ``cidr``, and each ``except`` a valid CIDR strictly inside it (Go's
    net.IPNet.Contains: an IPv4-mapped address counts as IPv4, so it is never inside an IPv6 ``cidr``)."""
    if not isinstance(block, dict):
        return []
    cidr = block.get("cidr")
    if not cidr:
        return [(f"{path}.cidr", "FieldValueRequired", "Required value")]
    network, errors = _cidr_errors(f"{path}.cidr", cidr)
    if network is None:
        return errors
    for i, excluded in enumerate(block.get("except") or []):
        where = f"{path}.except[{i}]"
        inner, more = _cidr_errors(where, excluded)
        errors += more
        if inner is None:
            continue
        address: Any = inner.network_address
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        inside = address.version == network.version and address in network
        if not inside or network.prefixlen >= inner.prefixlen:
            shown = _go_string(excluded)
            errors.append(
                (where, "FieldValueInvalid", f"Invalid value: {shown}: must be a strict subset of `cidr`")
            )
    return errors


def validate_network_policy(res: Resource, name: str, obj: dict[str, Any]) -> None:
    """A NetworkPolicy's ipBlocks, as kube-apiserver 1.36 checks them (the rest: the schema)."""
    if res.key != _NETWORK_POLICIES:
        return
    spec = obj.get("spec") or {}
    errors: list[tuple[str, str, str]] = []
    for direction, peers in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            for j, peer in enumerate((rule or {}).get(peers) or []):
                if isinstance(peer, dict) and "ipBlock" in peer:
                    errors += _ip_block_errors(f"spec.{direction}[{i}].{peers}[{j}].ipBlock", peer["ipBlock"])
    raise_if(errors, res, name)


def raise_if(errors: list[tuple[str, str, str]], res: Resource, name: str) -> None:
    if errors:
        raise invalid(res.kind, res.group, name, errors)


__all__ = ["ApiError"]
