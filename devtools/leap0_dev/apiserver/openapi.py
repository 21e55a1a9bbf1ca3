"""OpenAPI v3 documents as kube-apiserver publishes them under ``/openapi/v3``, for the CRDs in
``crds/`` and the core ``v1`` kinds the product touches, so that a plain ``kubectl apply`` works as on a
cluster.

What kubectl (1.27+) does with them: before sending an object it asks whether the server validates fields
itself, by looking in ``/openapi/v3/<group-version>`` for the resource's PATCH operation (found by its
``x-kubernetes-group-version-kind``) and that operation's ``fieldValidation`` query parameter. Found:
kubectl skips client-side validation and sends ``fieldValidation=Strict``, and the server refuses unknown
fields (HTTP 400 ``strict decoding error``), as a real cluster does. Not found: kubectl validates
client-side from the OpenAPI v2 document; no path at all for the kind: kubectl fails. ``kubectl apply`` of
an existing core object also reads the kind's schema here for its strategic-merge-patch keys.

Custom resources: the CRD's structural schema with ``metadata`` as ``ObjectMeta``, the list kind, and the
paths of the resource and its subresources. Core kinds: generated from the Kubernetes 1.37 JSON schemas
bundled with the ``kubernetes-validate`` package (converted back to OpenAPI: nullable type lists folded,
``$ref``s pointed at ``#/components/schemas``, int-or-string and quantity given their OpenAPI forms).

kubectl 1.37 does not read ``/openapi/v2`` for any of this (checked with a request log), so none is served.

Part of the kubectl-compatibility layer (with ``tables`` and ``protobuf``): nothing but kubectl needs it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
from pathlib import Path
from typing import Any

__all__ = [
    "CORE_KINDS",
    "OTHER_KINDS",
    "UNPRUNED_KINDS",
    "definition_name",
    "k8s_definitions",
    "openapi_v3_document",
    "openapi_v3_root",
]

K8S_SCHEMA_VERSION = "1.37.0"
META = "io.k8s.apimachinery.pkg.apis.meta.v1"

# Core v1 kinds served by `leap0 dev apiserver`: kind -> (plural, namespaced).
CORE_KINDS: dict[str, tuple[str, bool]] = {
    "Namespace": ("namespaces", False),
    "Pod": ("pods", True),
    "Secret": ("secrets", True),
    "PersistentVolumeClaim": ("persistentvolumeclaims", True),
    "ConfigMap": ("configmaps", True),
    "Event": ("events", True),
    "ServiceAccount": ("serviceaccounts", True),
    "Service": ("services", True),
}
# Other group-versions whose kinds the emulator serves: (group, version) -> kind -> (plural, namespaced).
OTHER_KINDS: dict[tuple[str, str], dict[str, tuple[str, bool]]] = {
    ("coordination.k8s.io", "v1"): {"Lease": ("leases", True)},
    ("networking.k8s.io", "v1"): {"NetworkPolicy": ("networkpolicies", True)},
    ("events.k8s.io", "v1"): {"Event": ("events", True)},
    ("apiextensions.k8s.io", "v1"): {"CustomResourceDefinition": ("customresourcedefinitions", False)},
}
# Kinds whose unknown fields `builtin.py` does not drop (their schemas are too loose to prune by).
UNPRUNED_KINDS = frozenset({"CustomResourceDefinition"})


# --- schema conversion (JSON schema from kubernetes-validate -> OpenAPI v3) --------------------------------
def _schema_dir() -> Path:
    """The Kubernetes JSON schemas bundled with ``kubernetes-validate`` (the dev extra pins the version):
    missing, the server must not start rather than stop validating built-in kinds."""
    import kubernetes_validate

    base = (
        Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{K8S_SCHEMA_VERSION}-local"
    )
    if not base.is_dir():
        raise FileNotFoundError(f"no Kubernetes {K8S_SCHEMA_VERSION} schemas in kubernetes-validate: {base}")
    return base


@functools.lru_cache(maxsize=1)
def k8s_definitions() -> dict[str, Any]:
    base = _schema_dir()
    raw = json.loads((base / "_definitions.json").read_text())
    defs: dict[str, Any] = raw.get("$defs") or raw.get("definitions") or {}
    return {name: _to_openapi(schema) for name, schema in defs.items()}


def _to_openapi(schema: Any) -> Any:
    if isinstance(schema, list):
        return [_to_openapi(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    one_of = schema.get("oneOf")
    if isinstance(one_of, list) and one_of and all(isinstance(s, dict) and "type" in s for s in one_of):
        alternatives = {t for s in one_of for t in _types(s["type"])}
        if alternatives == {"string", "integer"}:
            return {"type": "string", "format": "int-or-string", "x-kubernetes-int-or-string": True}
        if alternatives == {"string", "number"}:
            return {"type": "string", "format": "quantity"} | _describe(schema)
    for key, value in schema.items():
        if key == "type":
            types = _types(value)
            if types:
                out["type"] = types[0]
        elif key == "$ref" and isinstance(value, str):
            out["$ref"] = "#/components/schemas/" + value.rsplit("/", 1)[-1]
        elif key in ("properties", "patternProperties") and isinstance(value, dict):
            out[key] = {k: _to_openapi(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = _to_openapi(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [_to_openapi(v) for v in value]
        elif key == "enum" and schema.get("type") and _enum_is_kind_pin(schema):
            continue  # the JSON schemas pin apiVersion/kind; the API's OpenAPI does not
        elif key in ("$schema", "$id"):
            continue
        else:
            out[key] = value
    if "$ref" in out and len(out) > 1:
        ref = out.pop("$ref")
        out = {"allOf": [{"$ref": ref}], **out}
    return out


def _describe(schema: dict[str, Any]) -> dict[str, Any]:
    return {"description": schema["description"]} if "description" in schema else {}


def _types(value: Any) -> list[str]:
    if isinstance(value, str):
        return [] if value == "null" else [value]
    return [t for t in value if t != "null"]


def _enum_is_kind_pin(schema: dict[str, Any]) -> bool:
    enum = schema.get("enum")
    return isinstance(enum, list) and len(enum) == 1 and isinstance(enum[0], str)


def _closure(names: list[str], defs: dict[str, Any]) -> dict[str, Any]:
    """The named definitions and everything they reference."""
    found: dict[str, Any] = {}
    todo = list(names)
    while todo:
        name = todo.pop()
        if name in found or name not in defs:
            continue
        found[name] = defs[name]
        todo += _refs(defs[name])
    return found


def _refs(schema: Any) -> list[str]:
    refs: list[str] = []
    if isinstance(schema, dict):
        ref = schema.get("$ref")
        if isinstance(ref, str):
            refs.append(ref.rsplit("/", 1)[-1])
        for value in schema.values():
            refs += _refs(value)
    elif isinstance(schema, list):
        for value in schema:
            refs += _refs(value)
    return refs


def _gvk_of(schema: dict[str, Any]) -> list[dict[str, str]]:
    gvks = schema.get("x-kubernetes-group-version-kind")
    return gvks if isinstance(gvks, list) else []


# --- paths ------------------------------------------------------------------------------------------------
def _ref(name: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, description: str, type_: str = "string") -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "description": description,
        "schema": {"type": type_, "uniqueItems": True},
    }


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "description": description,
        "required": True,
        "schema": {"type": "string"},
    }


_DRY_RUN = _query(
    "dryRun",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun "
    "directive will result in an error response and no further processing of the request. Valid values are: "
    "- All: all dry run stages will be processed",
)
_FIELD_MANAGER = _query(
    "fieldManager", "fieldManager is a name associated with the actor or entity that is making these changes."
)
_FIELD_VALIDATION = _query(
    "fieldValidation",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) "
    "containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields "
    "that are silently dropped from the object, and will ignore all but the last duplicate field that the "
    "decoder encounters. - Warn: This will send a warning via the standard warning response header for each "
    "unknown field that is dropped from the object, and for each duplicate field that is encountered. The "
    "request will still succeed if there are no other errors, and will only persist the last of any "
    "duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest "
    "error if any unknown fields would be dropped from the object, or if any duplicate fields are present. "
    "The error returned from the server will contain all unknown and duplicate fields encountered.",
)
_FORCE = _query("force", 'Force is going to "force" Apply requests.', "boolean")
_PRETTY = _query("pretty", "If 'true', then the output is pretty printed.")
_LIST_PARAMS = [
    _query(
        "allowWatchBookmarks", 'allowWatchBookmarks requests watch events with type "BOOKMARK".', "boolean"
    ),
    _query("continue", "The continue option should be set when retrieving more results from the server."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by their fields."),
    _query("labelSelector", "A selector to restrict the list of returned objects by their labels."),
    _query("limit", "limit is a maximum number of responses to return for a list call.", "integer"),
    _query(
        "resourceVersion",
        "resourceVersion sets a constraint on what resource versions a request may be served from.",
    ),
    _query(
        "resourceVersionMatch",
        "resourceVersionMatch determines how resourceVersion is applied to list calls.",
    ),
    _query("sendInitialEvents", "`sendInitialEvents=true` may be set together with `watch=true`.", "boolean"),
    _query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _query("watch", "Watch for changes to the described resources.", "boolean"),
]
_JSON_TYPES = ["application/json", "application/yaml", "application/vnd.kubernetes.protobuf"]
_PATCH_TYPES = [
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
    "application/apply-patch+cbor",
]


def _content(schema: dict[str, Any], types: list[str] | None = None) -> dict[str, Any]:
    return {t: {"schema": schema} for t in (types or _JSON_TYPES)}


def _op(
    op_id: str,
    action: str,
    gvk: dict[str, str],
    tag: str,
    response: dict[str, Any],
    *,
    params: list[dict[str, Any]] | None = None,
    body: dict[str, Any] | None = None,
    body_types: list[str] | None = None,
    codes: tuple[str, ...] = ("200",),
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "tags": [tag],
        "description": f"{action} {gvk['kind']}",
        "operationId": op_id,
        "parameters": params or [],
        "responses": {
            code: {"description": "OK" if code == "200" else "Created", "content": _content(response)}
            for code in codes
        }
        | {"401": {"description": "Unauthorized"}},
        "x-kubernetes-action": action,
        "x-kubernetes-group-version-kind": dict(gvk),
    }
    if body is not None:
        op["requestBody"] = {"content": _content(body, body_types or ["*/*"]), "required": True}
    return op


def _resource_paths(
    prefix: str,
    gvk: dict[str, str],
    plural: str,
    namespaced: bool,
    schema_name: str,
    list_name: str,
    *,
    status: bool,
    strategic: bool,
) -> dict[str, Any]:
    kind = gvk["kind"]
    # kubectl apply sends a strategic merge patch only where the PATCH operation accepts one: built-in kinds,
    # never custom resources (the server refuses it for them with 415).
    patch_types = [t for t in _PATCH_TYPES if strategic or t != "application/strategic-merge-patch+json"]
    tag = f"{gvk['group'] or 'core'}_{gvk['version']}"
    op_kind = kind
    ns_word = "Namespaced" if namespaced else ""
    collection = f"{prefix}/namespaces/{{namespace}}/{plural}" if namespaced else f"{prefix}/{plural}"
    item = f"{collection}/{{name}}"
    common = (
        [_path_param("namespace", "object name and auth scope, such as for teams and projects")]
        if namespaced
        else []
    )
    name_param = [_path_param("name", f"name of the {kind}")]
    write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
    obj, lst = _ref(schema_name), _ref(list_name)
    status_ref = _ref(f"{META}.Status")

    # The object and its /status subresource answer get, put and patch alike, the operation ids ending
    # in "Status" for the subresource.
    def read(suffix: str) -> dict[str, Any]:
        return _op(f"read{ns_word}{op_kind}{suffix}", "get", gvk, tag, obj)

    def replace(suffix: str) -> dict[str, Any]:
        return _op(
            f"replace{ns_word}{op_kind}{suffix}",
            "put",
            gvk,
            tag,
            obj,
            params=write,
            body=obj,
            codes=("200", "201"),
        )

    def patch(suffix: str) -> dict[str, Any]:
        return _op(
            f"patch{ns_word}{op_kind}{suffix}",
            "patch",
            gvk,
            tag,
            obj,
            params=[*write, _FORCE],
            body=_ref(f"{META}.Patch"),
            body_types=patch_types,
            codes=("200", "201"),
        )

    paths: dict[str, Any] = {
        collection: {
            "get": _op(f"list{ns_word}{op_kind}", "list", gvk, tag, lst, params=_LIST_PARAMS),
            "post": _op(
                f"create{ns_word}{op_kind}",
                "post",
                gvk,
                tag,
                obj,
                params=write,
                body=obj,
                codes=("200", "201", "202"),
            ),
            "delete": _op(
                f"deletecollection{ns_word}{op_kind}",
                "deletecollection",
                gvk,
                tag,
                status_ref,
                params=_LIST_PARAMS,
                body=_ref(f"{META}.DeleteOptions"),
            ),
            "parameters": [*common, _PRETTY],
        },
        item: {
            "get": read(""),
            "put": replace(""),
            "delete": _op(
                f"delete{ns_word}{op_kind}",
                "delete",
                gvk,
                tag,
                status_ref,
                params=[_DRY_RUN],
                body=_ref(f"{META}.DeleteOptions"),
                codes=("200", "202"),
            ),
            "patch": patch(""),
            "parameters": [*name_param, *common, _PRETTY],
        },
    }
    if status:
        paths[f"{item}/status"] = {
            "get": read("Status"),
            "put": replace("Status"),
            "patch": patch("Status"),
            "parameters": [*name_param, *common, _PRETTY],
        }
    if namespaced:
        paths[f"{prefix}/{plural}"] = {
            "get": _op(f"list{op_kind}ForAllNamespaces", "list", gvk, tag, lst, params=_LIST_PARAMS),
            "parameters": [_PRETTY],
        }
    return paths


# --- CRDs -------------------------------------------------------------------------------------------------
def _reverse_group(group: str) -> str:
    return ".".join(reversed(group.split(".")))


def _crd_versions(crd: dict[str, Any]) -> list[dict[str, Any]]:
    return [v for v in (crd.get("spec") or {}).get("versions") or [] if v.get("served", True)]


def _crd_schema(crd: dict[str, Any], version: dict[str, Any]) -> dict[str, Any]:
    spec = crd["spec"]
    published: dict[str, Any] = copy.deepcopy(
        ((version.get("schema") or {}).get("openAPIV3Schema"))
        or {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    )
    props = published.setdefault("properties", {})
    props["apiVersion"] = {
        "description": "APIVersion defines the versioned schema of this representation of an object. Servers "
        "should convert recognized schemas to the latest internal value, and may reject unrecognized values.",
        "type": "string",
    }
    props["kind"] = {
        "description": "Kind is a string value representing the REST resource this object represents.",
        "type": "string",
    }
    props["metadata"] = {"allOf": [_ref(f"{META}.ObjectMeta")], "description": "Standard object's metadata."}
    published["type"] = "object"
    published["x-kubernetes-group-version-kind"] = [
        {"group": spec["group"], "kind": spec["names"]["kind"], "version": version["name"]}
    ]
    return published


def _crd_list_schema(crd: dict[str, Any], version: str, item_name: str) -> dict[str, Any]:
    spec = crd["spec"]
    list_kind = spec["names"].get("listKind") or spec["names"]["kind"] + "List"
    return {
        "description": f"{list_kind} is a list of {spec['names']['kind']}",
        "type": "object",
        "required": ["items"],
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion defines the versioned schema."},
            "items": {
                "type": "array",
                "items": _ref(item_name),
                "description": f"List of {spec['names']['plural']}.",
            },
            "kind": {
                "type": "string",
                "description": "Kind is a string value representing the REST resource.",
            },
            "metadata": {"allOf": [_ref(f"{META}.ListMeta")], "description": "Standard list metadata."},
        },
        "x-kubernetes-group-version-kind": [{"group": spec["group"], "kind": list_kind, "version": version}],
    }


_META_KINDS = [
    f"{META}.{name}"
    for name in (
        "APIResourceList",
        "DeleteOptions",
        "ListMeta",
        "ObjectMeta",
        "Patch",
        "Status",
        "WatchEvent",
    )
]


def _meta_schemas() -> dict[str, Any]:
    defs = k8s_definitions()
    schemas = _closure(_META_KINDS, defs)
    if f"{META}.Patch" not in schemas:
        schemas[f"{META}.Patch"] = {
            "description": "Patch is provided to give a concrete name and type to the Kubernetes PATCH "
            "request body.",
            "type": "object",
        }
    return schemas


def _document(paths: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.37.0"},
        "paths": paths,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "securitySchemes": {
                "BearerToken": {
                    "type": "apiKey",
                    "description": "Bearer Token authentication",
                    "name": "authorization",
                    "in": "header",
                }
            },
        },
        "security": [{"BearerToken": []}],
    }


def _crd_document(crds: list[dict[str, Any]], group: str, version: str) -> dict[str, Any] | None:
    paths: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    for crd in crds:
        spec = crd.get("spec") or {}
        if spec.get("group") != group:
            continue
        for entry in _crd_versions(crd):
            if entry.get("name") != version:
                continue
            names = spec["names"]
            base = f"{_reverse_group(group)}.{version}"
            item_name = f"{base}.{names['kind']}"
            list_name = f"{base}.{names.get('listKind') or names['kind'] + 'List'}"
            schemas[item_name] = _crd_schema(crd, entry)
            schemas[list_name] = _crd_list_schema(crd, version, item_name)
            gvk = {"group": group, "kind": names["kind"], "version": version}
            paths |= _resource_paths(
                f"/apis/{group}/{version}",
                gvk,
                names["plural"],
                spec.get("scope", "Namespaced") == "Namespaced",
                item_name,
                list_name,
                status="status" in (entry.get("subresources") or {}),
                strategic=False,
            )
    if not paths:
        return None
    paths[f"/apis/{group}/{version}/"] = {
        "get": {
            "tags": [f"{_tag(group)}_{version}"],
            "description": "get available resources",
            "operationId": f"get{_camel(group)}{version.capitalize()}APIResources",
            "responses": {"200": {"description": "OK", "content": _content(_ref(f"{META}.APIResourceList"))}},
        }
    }
    schemas |= _meta_schemas()
    return _document(dict(sorted(paths.items())), schemas)


def _tag(group: str) -> str:
    return group.replace(".", "_")


def _camel(group: str) -> str:
    return "".join(part.capitalize() for part in group.replace("-", ".").split("."))


# --- core and other built-in groups -------------------------------------------------------------------------
def _builtin_document(group: str, version: str) -> dict[str, Any] | None:
    kinds = CORE_KINDS if (group, version) == ("", "v1") else OTHER_KINDS.get((group, version))
    if not kinds:
        return None
    defs = k8s_definitions()
    paths: dict[str, Any] = {}
    roots: list[str] = list(_META_KINDS)
    prefix = "/api/v1" if group == "" else f"/apis/{group}/{version}"
    for kind, (plural, namespaced) in kinds.items():
        name = definition_name(defs, group, version, kind)
        list_name = definition_name(defs, group, version, kind + "List")
        if name is None or list_name is None:
            continue
        roots += [name, list_name]
        gvk = {"group": group, "kind": kind, "version": version}
        paths |= _resource_paths(
            prefix,
            gvk,
            plural,
            namespaced,
            name,
            list_name,
            status=kind in ("Namespace", "Pod", "Service", "CustomResourceDefinition"),
            strategic=True,
        )
    if not paths:
        return None
    return _document(dict(sorted(paths.items())), _closure(roots, defs))


def definition_name(defs: dict[str, Any], group: str, version: str, kind: str) -> str | None:
    for name, schema in defs.items():
        if not name.endswith("." + kind):
            continue
        for gvk in _gvk_of(schema):
            if gvk.get("group") == group and gvk.get("version") == version and gvk.get("kind") == kind:
                return name
    return None


# --- public -----------------------------------------------------------------------------------------------
def _group_versions(crds: list[dict[str, Any]]) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = [("", "v1"), *OTHER_KINDS]
    for crd in crds:
        group = (crd.get("spec") or {}).get("group")
        for entry in _crd_versions(crd):
            gv = (str(group), str(entry.get("name")))
            if gv not in found:
                found.append(gv)
    return found


def _cached_document(crds: list[dict[str, Any]], group: str, version: str) -> dict[str, Any] | None:
    key = json.dumps([group, version, crds], sort_keys=True, default=str)
    return _document_for(key)


@functools.lru_cache(maxsize=64)
def _document_for(key: str) -> dict[str, Any] | None:
    group, version, crds = json.loads(key)
    if any((c.get("spec") or {}).get("group") == group for c in crds):
        return _crd_document(crds, group, version)
    return _builtin_document(group, version)


def openapi_v3_document(crds: list[dict[str, Any]], group: str, version: str) -> dict[str, Any] | None:
    """The document served at ``/openapi/v3/api/v1`` (group ``""``) or ``/openapi/v3/apis/{group}/{version}``;
    ``None`` when the server has no such group-version (404)."""
    doc = _cached_document(crds, group, version)
    return copy.deepcopy(doc) if doc is not None else None


def _hash(doc: dict[str, Any] | None) -> str:
    return hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest().upper()[:128]


def openapi_v3_root(crds: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``/openapi/v3`` discovery document: each group-version's path and its ``serverRelativeURL`` (with
    the content hash kubectl's cache keys on, as the real server gives)."""
    paths: dict[str, Any] = {}
    for group, version in _group_versions(crds):
        doc = _cached_document(crds, group, version)
        if doc is None:
            continue
        rel = "api/v1" if group == "" else f"apis/{group}/{version}"
        paths[rel] = {"serverRelativeURL": f"/openapi/v3/{rel}?hash={_hash(doc)}"}
    return {"paths": dict(sorted(paths.items()))}
