"""The sandbox pod, built from a resolved Sandbox (pure: plain dicts in, a plain pod manifest out).

Layout (docs/operator.md, "The pod"):

- container ``sandbox``: the user's image, limits = requests from vcpu/memory/disk, the user's env minus the
  upstream OTLP exporter settings, plus ``OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:4318`` so the app's SDK
  sends to the sidecar with zero configuration;
- native sidecar ``telemetry`` (an init container with ``restartPolicy: Always``: it starts first and
  outlives the app), with its own small fixed resources, the identity env, the user's upstream OTLP settings
  (``valueFrom`` kept), the sandbox container's limits through the downward API, a strict security context;
- a shared process namespace and a shared ``workspace`` volume, so the sidecar can measure the sandbox;
- with sandbox logs on (``telemetry.logs``, docs/logs.md): an init container (the sidecar image) copying the
  supervisor into an ``emptyDir`` the sandbox container mounts read-only, and, when the Sandbox sets
  ``command``, the sandbox container running the supervisor with that command as its child (without a command
  the image's entrypoint runs as it is: the operator cannot know it); the pod's annotation
  ``leap0.dev/supervisor`` names the supervisor for the SDKs;
- no service-account token; ``restartPolicy: Never`` (a sandbox ends when its process does), and an open
  stdin on the sandbox container so a REPL/shell default command waits instead of exiting;
- Pod Security: the pod meets the ``baseline`` standard, the sandbox container hardened (no privilege
  escalation, the runtime's seccomp profile, its default capabilities minus ``NET_RAW``); the sidecar meets
  ``restricted`` always. A template's ``podSecurity: restricted`` makes the whole pod meet ``restricted``: it
  runs as ``runAsUser``/``runAsGroup``/``fsGroup`` (default 1000, never root) with every capability dropped,
  and its only volume is the workspace, an ``emptyDir`` or a persistentVolumeClaim (docs/network.md, "Pod
  security");
- the workspace: an ``emptyDir``, or with ``workspace.persistent`` the Sandbox's PersistentVolumeClaim
  (:func:`build_workspace_claim`, created before the pod and kept while the sandbox is paused).

The pod is named after the Sandbox, in its namespace (one pod per Sandbox: a deterministic name makes creation
idempotent, a second POST gets 409), and owned by it through kopf's public adoption helper
``kopf.append_owner_reference`` (a pure function on plain dicts). Not ``kopf.adopt`` itself: besides the
ownerReference and the name it also copies the Sandbox's own labels onto the pod, and the pod's labels are the
contract's (``leap0.dev/*``), not the user's.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, cast

import kopf

import leap0_contract as contract

from . import objects
from .config import OperatorConfig
from .resolve import OTLP_EXPORTER_PREFIX, UPSTREAM_ENDPOINT_VARS, Effective, EnvVar, PodSecurity

SIDECAR_OTLP_HTTP_URL = f"http://127.0.0.1:{contract.OTLP_HTTP_PORT}"
# The projected ServiceAccount token of the sidecar lives this long; the kubelet renews it at 80%.
TELEMETRY_TOKEN_SECONDS = 3600
# Capabilities the sandbox container drops under baseline (the runtime's default set otherwise): NET_RAW (no
# raw sockets) and KILL (root cannot signal other users' processes, the sidecar's among them).
BASELINE_DROPPED_CAPABILITIES = ("NET_RAW", "KILL")


def sidecar_security_context() -> dict[str, Any]:
    """The sidecar's securityContext (and the supervisor's init container's): ``restricted`` always."""
    return {
        "runAsNonRoot": True,
        "runAsUser": contract.SIDECAR_UID,
        "runAsGroup": contract.SIDECAR_GID,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


# The supervisor volume holds one static binary (about 6 MiB).
SUPERVISOR_VOLUME_SIZE = "32Mi"


def supervised_command(command: Sequence[str]) -> list[str]:
    """The sandbox container's command when sandbox logs are on: the supervisor, then the Sandbox's command
    as its child (``args`` stay the container's args, so both go to the child, ``$(VAR)`` expanded as before).
    """
    return [
        contract.SUPERVISOR_PATH,
        contract.SUPERVISOR_RUN,
        contract.SUPERVISOR_FLAG_CONTAINER,
        contract.SANDBOX_CONTAINER,
        "--",
        *command,
    ]


def supervisor_init_container(config: OperatorConfig) -> dict[str, Any]:
    """The init container copying the supervisor from the sidecar image into the supervisor volume: the
    binary copies itself, so the image needs no shell; it runs as the sidecar does (``restricted``)."""
    return {
        "name": contract.SUPERVISOR_INIT_CONTAINER,
        "image": config.sidecar_image,
        "command": [contract.SUPERVISOR_IMAGE_PATH, contract.SUPERVISOR_INSTALL, contract.SUPERVISOR_PATH],
        "resources": _resources(config.sidecar_cpu, config.sidecar_memory),
        "volumeMounts": [{"name": contract.SUPERVISOR_VOLUME, "mountPath": contract.SUPERVISOR_MOUNT_PATH}],
        "securityContext": sidecar_security_context(),
    }


def sandbox_security_context(security: PodSecurity) -> dict[str, Any]:
    """The sandbox container's securityContext: hardened under ``baseline`` (the app may still run as root),
    non-root with nothing but the runtime's seccomp profile under ``restricted``."""
    if security.restricted:
        return {
            "runAsNonRoot": True,
            "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]},
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": list(BASELINE_DROPPED_CAPABILITIES)},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def default_destination_env(config: OperatorConfig) -> list[EnvVar]:
    """The sidecar's env for the operator's default destination: the endpoint as a plain value
    (``--default-otlp-endpoint``), else from the Secret, and the headers from the Secret (``optional``: a
    namespace without the Secret simply has no platform export). A Secret stays a ``secretKeyRef``: the
    operator never reads it, nor writes its values into the pod."""
    env: list[EnvVar] = []
    if config.default_otlp_endpoint:
        env.append({"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": config.default_otlp_endpoint})
    if config.default_otlp_secret:
        keys = []
        if not config.default_otlp_endpoint:
            keys.append((contract.OTEL_EXPORTER_OTLP_ENDPOINT, contract.DEFAULT_OTLP_SECRET_ENDPOINT_KEY))
        keys.append((contract.OTEL_EXPORTER_OTLP_HEADERS, contract.DEFAULT_OTLP_SECRET_HEADERS_KEY))
        for name, key in keys:
            ref = {"name": config.default_otlp_secret, "key": key, "optional": True}
            env.append({"name": name, "valueFrom": {"secretKeyRef": ref}})
    return env


def telemetry_token_volume(audience: str) -> dict[str, Any]:
    """A projected ServiceAccount token of ``audience`` (the pod's identity for the platform's collector)."""
    return {
        "name": contract.TELEMETRY_TOKEN_VOLUME,
        "projected": {
            "sources": [
                {
                    "serviceAccountToken": {
                        "audience": audience,
                        "expirationSeconds": TELEMETRY_TOKEN_SECONDS,
                        "path": contract.TELEMETRY_TOKEN_PATH,
                    }
                }
            ]
        },
    }


def pod_name(sandbox_name: str) -> str:
    """The pod of Sandbox ``x`` is named ``x``."""
    return sandbox_name


def split_env(env: Sequence[EnvVar]) -> tuple[list[EnvVar], list[EnvVar]]:
    """(app env, sidecar env): every ``OTEL_EXPORTER_OTLP_*`` variable describes the upstream exporter, so it
    goes to the sidecar only; the rest (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, ...) stays with
    the app."""
    app: list[EnvVar] = []
    sidecar: list[EnvVar] = []
    for var in env:
        (sidecar if str(var["name"]).startswith(OTLP_EXPORTER_PREFIX) else app).append(dict(var))
    return app, sidecar


def _resources(cpu: str, memory: str, disk_mib: int | None = None) -> dict[str, Any]:
    amounts: dict[str, str] = {"cpu": cpu, "memory": memory}
    if disk_mib is not None:
        amounts["ephemeral-storage"] = f"{disk_mib}Mi"
    return {"limits": dict(amounts), "requests": dict(amounts)}


def _downward_limit(name: str, resource: str, divisor: str) -> EnvVar:
    return {
        "name": name,
        "valueFrom": {
            "resourceFieldRef": {
                "containerName": contract.SANDBOX_CONTAINER,
                "resource": resource,
                "divisor": divisor,
            }
        },
    }


def _field(name: str, path: str) -> EnvVar:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def _probe(path: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": contract.SIDECAR_HEALTH_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": 1,
    }


def created_images(pod: Mapping[str, Any]) -> dict[str, str]:
    """Container name → image, for every container and init container of a pod manifest."""
    images: dict[str, str] = {}
    for container in objects.all_containers(pod):
        images[str(container.get("name"))] = str(container.get("image"))
    return images


def claim_name(sandbox_name: str) -> str:
    """The persistent workspace of Sandbox ``x`` is the PersistentVolumeClaim ``x-workspace``."""
    return sandbox_name + contract.WORKSPACE_CLAIM_SUFFIX


def workspace_volume(sandbox_name: str, effective: Effective) -> dict[str, Any]:
    """The pod's ``workspace`` volume: the Sandbox's claim when the workspace is persistent, else an
    ``emptyDir`` (``sizeLimit`` = disk)."""
    if effective.workspace.persistent:
        return {
            "name": contract.WORKSPACE_VOLUME,
            "persistentVolumeClaim": {"claimName": claim_name(sandbox_name)},
        }
    return {
        "name": contract.WORKSPACE_VOLUME,
        "emptyDir": {"sizeLimit": f"{effective.disk}Mi"} if effective.disk is not None else {},
    }


def build_workspace_claim(*, owner: Mapping[str, Any], effective: Effective) -> dict[str, Any] | None:
    """The PersistentVolumeClaim of a persistent workspace (None for an ``emptyDir`` one): ``ReadWriteOnce``,
    ``disk`` MiB (the contract's default without one), the workspace's storage class (unset: the cluster's
    default), owned by the Sandbox (its controller: deleted with it, never with a pod), so a resumed pod
    mounts the same claim."""
    if not effective.workspace.persistent:
        return None
    name = objects.name(owner)
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": f"{effective.workspace_mib}Mi"}},
    }
    if effective.workspace.storage_class:
        spec["storageClassName"] = effective.workspace.storage_class
    claim: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": claim_name(name),
            "namespace": objects.namespace(owner),
            "labels": {
                contract.LABEL_SANDBOX_ID: name,
                contract.LABEL_TEMPLATE_ID: effective.template_id,
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
            },
        },
        "spec": spec,
    }
    kopf.append_owner_reference(claim, owner=kopf.Body(cast(kopf.RawBody, owner)), block_owner_deletion=True)
    return claim


def claim_conflict(claim: Mapping[str, Any], owner: Mapping[str, Any]) -> str | None:
    """Why an existing claim of the workspace's name cannot be this Sandbox's workspace (None: it is its
    own, created earlier). A claim of that name made by someone else (another app's volume, a claim left by
    an earlier Sandbox of the same name) is never mounted: naming a Sandbox after it must not hand its data
    to the sandbox's author."""
    uid = objects.uid(owner)
    if uid is not None and uid in objects.controller_uids(claim):
        return None
    name = objects.name(claim)
    return (
        f"PersistentVolumeClaim {name} exists and is not this Sandbox's (its controller is not Sandbox "
        f"{objects.name(owner)} uid {uid}), so it is not mounted: delete the claim and create the Sandbox "
        "again, or create it under another name"
    )


def build_pod(
    *,
    owner: Mapping[str, Any],
    effective: Effective,
    org_id: str,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The pod manifest of the Sandbox ``owner`` (its body: ``apiVersion``, ``kind``, ``metadata`` with
    ``name``, ``namespace`` and ``uid``), which is its controller: deleting the Sandbox deletes the pod
    (no finalizer needed)."""
    security = effective.security
    name = objects.name(owner)
    namespace = objects.namespace(owner)
    if effective.telemetry:
        app_env, upstream_env = split_env(effective.env)
    else:  # no sidecar: the app exports (if at all) straight to the user's endpoint
        app_env, upstream_env = [dict(v) for v in effective.env], []
    workspace_mount = {"name": contract.WORKSPACE_VOLUME, "mountPath": contract.WORKSPACE_PATH}
    sandbox: dict[str, Any] = {
        "name": contract.SANDBOX_CONTAINER,
        "image": effective.image,
        "resources": _resources(str(effective.vcpu), f"{effective.memory}Mi", effective.disk),
        "volumeMounts": [workspace_mount],
        # An open stdin keeps images whose default command is a REPL or a shell (python:3.12-slim runs
        # `python3`) waiting for input instead of exiting at once: a sandbox lives until its timeout, and work
        # reaches it through exec.
        "stdin": True,
        "securityContext": sandbox_security_context(security),
    }
    logs = effective.telemetry and effective.logs
    if effective.command is not None:
        sandbox["command"] = supervised_command(effective.command) if logs else list(effective.command)
    if effective.args is not None:
        sandbox["args"] = list(effective.args)

    init_containers: list[dict[str, Any]] = []
    volumes: list[dict[str, Any]] = [workspace_volume(name, effective)]
    if logs:
        init_containers.append(supervisor_init_container(config))
        volumes.append(
            {"name": contract.SUPERVISOR_VOLUME, "emptyDir": {"sizeLimit": SUPERVISOR_VOLUME_SIZE}}
        )
        sandbox["volumeMounts"].append(
            {
                "name": contract.SUPERVISOR_VOLUME,
                "mountPath": contract.SUPERVISOR_MOUNT_PATH,
                "readOnly": True,
            }
        )
    token_volume: dict[str, Any] | None = None
    if effective.telemetry:
        app_env = [
            *app_env,
            {"name": contract.OTEL_EXPORTER_OTLP_ENDPOINT, "value": SIDECAR_OTLP_HTTP_URL},
            {"name": contract.OTEL_EXPORTER_OTLP_PROTOCOL, "value": "http/protobuf"},
        ]
        platform = config.platform_destination and not any(
            v["name"] in UPSTREAM_ENDPOINT_VARS for v in upstream_env
        )
        if platform:  # the template's own OTLP settings (headers without an endpoint) win over the Secret's
            given = {v["name"] for v in upstream_env}
            default_env = [v for v in default_destination_env(config) if v["name"] not in given]
            upstream_env = [*default_env, *upstream_env]
        sidecar_env: list[EnvVar] = [
            {"name": contract.ENV_SANDBOX_ID, "value": name},
            {"name": contract.ENV_ORG_ID, "value": org_id},
            {"name": contract.ENV_TEMPLATE_ID, "value": effective.template_id},
            _field(contract.ENV_K8S_NAMESPACE, "metadata.namespace"),
            _field(contract.ENV_K8S_POD_NAME, "metadata.name"),
            _downward_limit(contract.ENV_SANDBOX_CPU_LIMIT_MILLICORES, "limits.cpu", "1m"),
            _downward_limit(contract.ENV_SANDBOX_MEMORY_LIMIT_BYTES, "limits.memory", "1"),
        ]
        if effective.disk is not None:
            sidecar_env.append(
                _downward_limit(contract.ENV_SANDBOX_DISK_LIMIT_BYTES, "limits.ephemeral-storage", "1")
            )
        sidecar_env += [
            {"name": contract.ENV_WORKSPACE, "value": contract.WORKSPACE_PATH},
            {"name": contract.ENV_HEALTH_ENDPOINT, "value": f"0.0.0.0:{contract.SIDECAR_HEALTH_PORT}"},
            *upstream_env,
        ]
        sidecar_mounts: list[dict[str, Any]] = [{**workspace_mount, "readOnly": True}]
        if platform and config.telemetry_token_audience:
            # The pod's identity for the platform's collector: a token of its own audience, mounted in the
            # sidecar only (the app cannot reach another container's mounts), sent with the default
            # destination only (never to an endpoint the Sandbox's creator chose).
            sidecar_env.append(
                {
                    "name": contract.ENV_TELEMETRY_TOKEN_FILE,
                    "value": f"{contract.TELEMETRY_TOKEN_DIR}/{contract.TELEMETRY_TOKEN_PATH}",
                }
            )
            sidecar_mounts.append(
                {
                    "name": contract.TELEMETRY_TOKEN_VOLUME,
                    "mountPath": contract.TELEMETRY_TOKEN_DIR,
                    "readOnly": True,
                }
            )
            token_volume = telemetry_token_volume(config.telemetry_token_audience)
        init_containers.append(
            {
                "name": contract.TELEMETRY_CONTAINER,
                "image": config.sidecar_image,
                "restartPolicy": "Always",
                "env": sidecar_env,
                "resources": _resources(config.sidecar_cpu, config.sidecar_memory),
                "volumeMounts": sidecar_mounts,
                "securityContext": sidecar_security_context(),
                "startupProbe": _probe(contract.SIDECAR_HEALTH_PATH, 1, 30),
                "readinessProbe": _probe(contract.SIDECAR_READY_PATH, 5, 3),
                "livenessProbe": _probe(contract.SIDECAR_HEALTH_PATH, 10, 3),
            }
        )
    if app_env:
        sandbox["env"] = app_env

    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "shareProcessNamespace": True,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "containers": [sandbox],
        "volumes": volumes,
    }
    if token_volume is not None:
        spec["volumes"].append(token_volume)
    if security.restricted:
        spec["securityContext"] = {
            "runAsNonRoot": True,
            "runAsUser": security.run_as_user,
            "runAsGroup": security.run_as_group,
            "fsGroup": security.fs_group,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
    if init_containers:
        spec["initContainers"] = init_containers
    if effective.runtime_class_name:
        spec["runtimeClassName"] = effective.runtime_class_name
    if effective.node_selector:
        spec["nodeSelector"] = dict(effective.node_selector)
    if effective.tolerations:
        spec["tolerations"] = [dict(t) for t in effective.tolerations]

    pod: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name(name),
            "namespace": namespace,
            "labels": {
                contract.LABEL_SANDBOX_ID: name,
                contract.LABEL_ORG_ID: org_id,
                contract.LABEL_TEMPLATE_ID: effective.template_id,
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
            },
        },
        "spec": spec,
    }
    pod["metadata"]["annotations"] = {
        contract.ANNOTATION_POD_IMAGES: json.dumps(created_images(pod), sort_keys=True, separators=(",", ":"))
    }
    if logs:
        pod["metadata"]["annotations"][contract.ANNOTATION_SUPERVISOR] = contract.SUPERVISOR_PATH
    kopf.append_owner_reference(pod, owner=kopf.Body(cast(kopf.RawBody, owner)), block_owner_deletion=True)
    return pod
