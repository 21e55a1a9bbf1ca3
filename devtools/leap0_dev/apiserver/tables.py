"""The server-side Table format (``meta.k8s.io/v1`` ``Table``), as kube-apiserver answers
``Accept: application/json;as=Table;v=v1;g=meta.k8s.io`` (what ``kubectl get`` asks for).

Custom resources get the CRD's ``additionalPrinterColumns`` after a ``Name`` column (apiextensions'
tableconvertor: integer/number/boolean cells typed, ``date`` cells the age as the server prints it, other
cells printed strings, missing values ``null``); with no printer columns, ``Name`` and
``Age``. Core kinds get the columns of Kubernetes' built-in printers for the kinds the product touches (Pod,
Namespace, Secret, ConfigMap, Event, Lease, PersistentVolumeClaim, NetworkPolicy), else the default ``Name`` /
``Created At``.

Each row carries its object as ``PartialObjectMetadata`` (the default), the full object
(``includeObject=Object``, which kubectl sends with ``--sort-by``) or nothing (``includeObject=None``).

Part of the kubectl-compatibility layer (with ``openapi`` and ``protobuf``): nothing but kubectl needs it.
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Callable
from typing import Any

__all__ = ["human_duration", "jsonpath_values", "render_table"]

NAME_DESCRIPTION = (
    "Name must be unique within a namespace. Is required when creating resources, although some resources "
    "may allow a client to request the generation of an appropriate name automatically. Name is primarily "
    "intended for creation idempotence and configuration definition. Cannot be updated. More info: "
    "https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names"
)
CREATED_DESCRIPTION = (
    "CreationTimestamp is a timestamp representing the server time when this object was created. It is "
    "not guaranteed to be set in happens-before order across separate operations. Clients may not set this "
    "value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. "
    "Null for lists. "
    "More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata"
)

Column = dict[str, Any]
Row = list[Any]


# --- JSONPath (the subset CRD printer columns and kubectl use) ------------------------------------------
_TOKEN = re.compile(
    r"""\.\.(?P<recursive>[A-Za-z0-9_\-]+)
      | \.(?P<field>[A-Za-z0-9_\-$@]+)
      | \[\s*'(?P<quoted>[^']*)'\s*\]
      | \[\s*"(?P<dquoted>[^"]*)"\s*\]
      | \[\s*(?P<index>-?\d+)\s*\]
      | \[\s*(?P<slice>-?\d*:-?\d*)\s*\]
      | \[\s*\*\s*\]
      | \.\*
      | \[\s*\?\(\s*@\.(?P<fpath>[A-Za-z0-9_.\-]+)\s*(?P<op>==|!=)\s*
            (?P<fval>'[^']*'|"[^"]*"|[^)\s]+)\s*\)\s*\]
      | \[\s*\?\(\s*@\.(?P<epath>[A-Za-z0-9_.\-]+)\s*\)\s*\]
    """,
    re.VERBOSE,
)


def _walk(values: list[Any], step: re.Match[str]) -> list[Any]:
    out: list[Any] = []
    groups = step.groupdict()
    for value in values:
        if groups["recursive"] is not None:
            out += _recursive(value, groups["recursive"])
        elif groups["field"] is not None or groups["quoted"] is not None or groups["dquoted"] is not None:
            name = groups["field"] or groups["quoted"] or groups["dquoted"] or ""
            if isinstance(value, dict) and name in value:
                out.append(value[name])
        elif groups["index"] is not None:
            i = int(groups["index"])
            if isinstance(value, list) and -len(value) <= i < len(value):
                out.append(value[i])
        elif groups["slice"] is not None:
            if isinstance(value, list):
                start, _, stop = groups["slice"].partition(":")
                out += value[int(start) if start else None : int(stop) if stop else None]
        elif groups["fpath"] is not None or groups["epath"] is not None:
            if isinstance(value, list):
                out += [item for item in value if _filter(item, groups)]
        elif isinstance(value, list):
            out += value
        elif isinstance(value, dict):
            out += list(value.values())
    return out


def _recursive(value: Any, name: str) -> list[Any]:
    found: list[Any] = []
    if isinstance(value, dict):
        if name in value:
            found.append(value[name])
        for sub in value.values():
            found += _recursive(sub, name)
    elif isinstance(value, list):
        for sub in value:
            found += _recursive(sub, name)
    return found


def _filter(item: Any, groups: dict[str, str | None]) -> bool:
    path = groups["fpath"] or groups["epath"] or ""
    current: Any = item
    for part in path.split("."):
        if not isinstance(current, dict) or part not in current:
            return False
        current = current[part]
    if groups["epath"] is not None:
        return True
    raw = groups["fval"] or ""
    if raw[:1] in ("'", '"'):
        wanted: Any = raw[1:-1]
    else:
        try:
            wanted = json.loads(raw)
        except ValueError:
            wanted = raw
    same = current == wanted or str(current) == str(wanted)
    return same if groups["op"] == "==" else not same


def jsonpath_values(obj: Any, path: str) -> list[Any]:
    """Every value ``path`` selects: ``.status.phase``, ``{.a[0].b}``, ``.c[?(@.type=="Ready")].status``."""
    text = path.strip()
    if text.startswith("{") and text.endswith("}"):
        text = text[1:-1].strip()
    if text.startswith("$"):
        text = text[1:]
    values = [obj]
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            return []
        values = _walk(values, match)
        pos = match.end()
    return values


# --- cells --------------------------------------------------------------------------------------------------
def _go_print(value: Any) -> str:
    """A value printed as the server's JSONPath printer prints it (``fmt.Fprint`` of the value)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    if value is None:
        return "<nil>"
    return str(value)


def _parse_time(text: Any) -> _dt.datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        parsed = _dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=_dt.UTC)
    return parsed


def _rfc3339(moment: _dt.datetime) -> str:
    return moment.astimezone(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _typed_cell(column_type: str, value: Any, now: _dt.datetime) -> Any:
    """apiextensions' cellForJSONValue (a ``date`` becomes the age kubectl prints, as the server computes it:
    ``ConvertToHumanReadableDateType``, so a time in the future shows as ``<invalid>``)."""
    if value is None:
        return None
    if column_type == "integer":
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float):
            return int(value)
        return None
    if column_type == "number":
        if isinstance(value, bool):
            return None
        return float(value) if isinstance(value, int | float) else None
    if column_type == "boolean":
        return value if isinstance(value, bool) else None
    if column_type == "date":
        if not isinstance(value, str):
            return None
        moment = _parse_time(value)
        return human_duration((now - moment).total_seconds()) if moment is not None else "<invalid>"
    return value if isinstance(value, str) else None


def human_duration(seconds: float) -> str:
    """``k8s.io/apimachinery/pkg/util/duration.HumanDuration``: how kubectl and the server print ages."""
    whole = int(seconds)
    if whole < -1:
        return "<invalid>"
    if whole < 0:
        return "0s"
    if whole < 120:
        return f"{whole}s"
    minutes = whole // 60
    if minutes < 10:
        return _and_rest(f"{minutes}m", whole % 60, "s")
    if minutes < 180:
        return f"{minutes}m"
    hours = whole // 3600
    if hours < 8:
        return _and_rest(f"{hours}h", minutes % 60, "m")
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return _and_rest(f"{hours // 24}d", hours % 24, "h")
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        return _and_rest(f"{hours // 24 // 365}y", (hours // 24) % 365, "d")
    return f"{hours // 24 // 365}y"


def _and_rest(big: str, rest: int, unit: str) -> str:
    """``HumanDuration``'s two-unit forms ("2m30s", "3d1h"): the smaller unit only when it is not zero."""
    return big if rest == 0 else f"{big}{rest}{unit}"


def _created_at(obj: dict[str, Any]) -> str | None:
    """The default table convertor's ``Created At`` cell: the creation time in RFC 3339, UTC."""
    created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    return _rfc3339(created) if created is not None else None


def _age(obj: dict[str, Any], now: _dt.datetime) -> str:
    created = _parse_time((obj.get("metadata") or {}).get("creationTimestamp"))
    if created is None:
        return "<unknown>"
    return human_duration((now - created).total_seconds())


# --- column sets ------------------------------------------------------------------------------------------
def _crd_columns(crd: dict[str, Any], version: str) -> list[tuple[Column, str]]:
    spec = crd.get("spec") or {}
    entry: dict[str, Any] = next((v for v in spec.get("versions") or [] if v.get("name") == version), {})
    printer = entry.get("additionalPrinterColumns")
    if printer is None:
        printer = spec.get("additionalPrinterColumns")
    if not printer:
        printer = [{"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]
    columns = []
    for col in printer:
        path = str(col.get("jsonPath") or col.get("JSONPath") or "")
        definition: Column = {
            "name": col["name"],
            "type": col.get("type", "string"),
            "format": col.get("format", ""),
            "description": col.get("description")
            or f"Custom resource definition column (in JSONPath format): {path}",
            "priority": int(col.get("priority") or 0),
        }
        columns.append((definition, path))
    return columns


def _column(
    name: str, type_: str = "string", description: str = "", priority: int = 0, fmt: str = ""
) -> Column:
    return {"name": name, "type": type_, "format": fmt, "description": description, "priority": priority}


def _name_column() -> Column:
    return _column("Name", "string", NAME_DESCRIPTION, fmt="name")


def _pod_row(pod: dict[str, Any], now: _dt.datetime) -> Row:
    spec = pod.get("spec") or {}
    status = pod.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = status.get("reason") or status.get("phase") or "Unknown"
    for s in statuses:
        state = s.get("state") or {}
        waiting = (state.get("waiting") or {}).get("reason")
        terminated = state.get("terminated") or {}
        if waiting:
            reason = waiting
        elif terminated.get("reason"):
            reason = terminated["reason"]
    if (pod.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return [
        f"{ready}/{len(containers)}",
        reason,
        str(restarts),
        _age(pod, now),
        status.get("podIP") or "<none>",
        spec.get("nodeName") or "<none>",
        status.get("nominatedNodeName") or "<none>",
        "<none>",
    ]


def _data_count(obj: dict[str, Any]) -> int:
    return len(obj.get("data") or {}) + len(obj.get("binaryData") or {}) + len(obj.get("stringData") or {})


def _event_object(event: dict[str, Any]) -> str:
    ref = event.get("involvedObject") or event.get("regarding") or {}
    kind = str(ref.get("kind") or "").lower()
    return f"{kind}/{ref.get('name', '')}"


def _event_last_seen(event: dict[str, Any], now: _dt.datetime) -> str:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        moment = _parse_time(event.get(key))
        if moment is not None:
            return human_duration((now - moment).total_seconds())
    meta_created = _parse_time((event.get("metadata") or {}).get("creationTimestamp"))
    return human_duration((now - meta_created).total_seconds()) if meta_created else "<unknown>"


def _label_selector(selector: Any) -> str:
    """A LabelSelector as kubectl prints it (metav1.FormatLabelSelector): ``k=v,k2 in (a,b)``, ``<none>``."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    words = {"In": "in", "NotIn": "notin"}
    for expression in selector.get("matchExpressions") or ():
        key, op = expression.get("key", ""), expression.get("operator", "")
        if op in words:
            parts.append(f"{key} {words[op]} ({','.join(expression.get('values') or ())})")
        elif op == "Exists":
            parts.append(key)
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts) or "<none>"


_ACCESS_MODE_SHORT = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}


def _claim_row(claim: dict[str, Any], now: _dt.datetime) -> Row:
    """kubectl's PersistentVolumeClaim columns: capacity and access modes from the status once bound."""
    spec = claim.get("spec") or {}
    status = claim.get("status") or {}
    bound = status.get("phase") == "Bound"
    capacity = str((status.get("capacity") or {}).get("storage") or "") if bound else ""
    modes = ",".join(_ACCESS_MODE_SHORT.get(m, m) for m in status.get("accessModes") or []) if bound else ""
    return [
        status.get("phase") or "Pending",
        spec.get("volumeName") or "",
        capacity,
        modes,
        spec.get("storageClassName") or "<unset>",
        spec.get("volumeAttributesClassName") or "<unset>",
        _age(claim, now),
        spec.get("volumeMode") or "Filesystem",
    ]


_CorePrinter = tuple[list[Column], Callable[[dict[str, Any], _dt.datetime], Row]]

_AGE = _column("Age", "string", CREATED_DESCRIPTION)

_CORE: dict[str, _CorePrinter] = {
    "Pod": (
        [
            _name_column(),
            _column("Ready", description="The aggregate readiness state of this pod for accepting traffic."),
            _column("Status", description="The aggregate status of the containers in this pod."),
            _column(
                "Restarts", "string", "The number of times the containers in this pod have been restarted."
            ),
            _AGE,
            _column("IP", description="IP address assigned to the pod", priority=1),
            _column("Node", description="Name of the node the pod is assigned to", priority=1),
            _column("Nominated Node", description="Name of the node nominated for the pod", priority=1),
            _column("Readiness Gates", description="Pod readiness gates", priority=1),
        ],
        _pod_row,
    ),
    "Namespace": (
        [_name_column(), _column("Status", description="The status of the namespace"), _AGE],
        lambda o, now: [(o.get("status") or {}).get("phase") or "Active", _age(o, now)],
    ),
    "Secret": (
        [
            _name_column(),
            _column("Type", description="The type of the secret"),
            _column("Data", "string", "The number of entries in the secret's data"),
            _AGE,
        ],
        lambda o, now: [o.get("type") or "Opaque", _data_count(o), _age(o, now)],
    ),
    "ConfigMap": (
        [_name_column(), _column("Data", "string", "Number of data in configmap"), _AGE],
        lambda o, now: [_data_count(o), _age(o, now)],
    ),
    "PersistentVolumeClaim": (
        [
            _name_column(),
            _column("Status", description="Status of the claim (Pending, Bound, Lost)"),
            _column("Volume", description="The PersistentVolume bound to the claim"),
            _column("Capacity", description="The actual storage of the bound volume"),
            _column("Access Modes", description="The access modes of the bound volume"),
            _column("StorageClass", description="The StorageClass of the claim"),
            _column("VolumeAttributesClass", description="The VolumeAttributesClass of the claim"),
            _AGE,
            _column("VolumeMode", description="Block or Filesystem", priority=1),
        ],
        _claim_row,
    ),
    "NetworkPolicy": (
        [
            _name_column(),
            _column("Pod-Selector", description="The pods the policy applies to (spec.podSelector)"),
            _AGE,
        ],
        lambda o, now: [_label_selector((o.get("spec") or {}).get("podSelector")), _age(o, now)],
    ),
    "Lease": (
        [_name_column(), _column("Holder", description="Holder identity of the lease"), _AGE],
        lambda o, now: [(o.get("spec") or {}).get("holderIdentity") or "", _age(o, now)],
    ),
    "Event": (
        [
            _column("Last Seen", description="Time since the last occurrence of the event"),
            _column("Type", description="Type of this event"),
            _column("Reason", description="Reason of this event"),
            _column("Object", description="The object this event is about"),
            _column("Subobject", description="Field path within the object", priority=1),
            _column("Source", description="Component that emitted the event", priority=1),
            _column("Message", description="A human-readable description of the event"),
            _column("First Seen", description="Time since the first occurrence", priority=1),
            _column("Count", description="Number of occurrences", priority=1),
            _name_column() | {"priority": 1},
        ],
        lambda o, now: [],  # rows built in _event_row (the name is not the first cell)
    ),
}


def _event_row(event: dict[str, Any], now: _dt.datetime) -> Row:
    first = _parse_time(event.get("firstTimestamp"))
    source = event.get("source") or {}
    return [
        _event_last_seen(event, now),
        event.get("type") or "",
        event.get("reason") or "",
        _event_object(event),
        (event.get("involvedObject") or {}).get("fieldPath") or "",
        ", ".join(v for v in (source.get("component"), source.get("host")) if v)
        or event.get("reportingComponent")
        or "",
        str(event.get("message") or "").strip(),
        human_duration((now - first).total_seconds()) if first else "<unknown>",
        event.get("count") or 1,
        (event.get("metadata") or {}).get("name", ""),
    ]


# --- the table ----------------------------------------------------------------------------------------------
def _row_object(obj: dict[str, Any], include: str) -> dict[str, Any] | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def render_table(
    crd: dict[str, Any] | None,
    version: str,
    objects: list[dict[str, Any]],
    list_metadata: dict[str, Any],
    *,
    include_object: str = "Metadata",
    kind: str | None = None,
    now: _dt.datetime | None = None,
) -> dict[str, Any]:
    """The ``Table`` for ``objects`` (a list, or a single object as a one-row table, as for a get or a watch
    event). ``include_object`` is the ``includeObject`` query parameter (``None``, ``Metadata``, ``Object``);
    ``kind`` names the core kind when ``objects`` may be empty."""
    moment = now or _dt.datetime.now(_dt.UTC)
    include = include_object if include_object in ("None", "Object") else "Metadata"
    rows: list[dict[str, Any]] = []
    if crd is not None:
        columns = _crd_columns(crd, version)
        definitions = [_name_column(), *(c for c, _ in columns)]
        for obj in objects:
            cells: Row = [(obj.get("metadata") or {}).get("name", "")]
            for definition, path in columns:
                found = jsonpath_values(obj, path)
                if not found or found[0] is None:
                    cells.append(None)
                elif definition["type"] == "string":
                    cells.append(_go_print(found[0]))
                else:
                    cells.append(_typed_cell(definition["type"], found[0], moment))
            rows.append(_row(cells, obj, include))
    else:
        core_kind = kind or next((str(o.get("kind")) for o in objects if o.get("kind")), "")
        if core_kind == "Event":
            definitions = _CORE["Event"][0]
            rows = [_row(_event_row(o, moment), o, include) for o in objects]
        elif core_kind in _CORE:
            definitions, build = _CORE[core_kind]
            rows = [
                _row([(o.get("metadata") or {}).get("name", ""), *build(o, moment)], o, include)
                for o in objects
            ]
        else:
            definitions = [_name_column(), _column("Created At", "date", CREATED_DESCRIPTION)]
            rows = [
                _row(
                    [
                        (o.get("metadata") or {}).get("name", ""),
                        _created_at(o),
                    ],
                    o,
                    include,
                )
                for o in objects
            ]
    meta = {
        k: v
        for k, v in (list_metadata or {}).items()
        if k in ("resourceVersion", "continue", "remainingItemCount")
    }
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": meta,
        "columnDefinitions": [dict(d) for d in definitions],
        "rows": rows,
    }


def _row(cells: Row, obj: dict[str, Any], include: str) -> dict[str, Any]:
    row: dict[str, Any] = {"cells": cells}
    embedded = _row_object(obj, include)
    if embedded is not None:
        row["object"] = embedded
    return row
