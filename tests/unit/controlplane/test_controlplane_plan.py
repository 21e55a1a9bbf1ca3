"""The real control plane's build plan and command lines (leap0_dev.controlplane): pure, nothing started."""

from __future__ import annotations

import stat
import urllib.parse
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509

from leap0_dev.controlplane import build, pki, plan
from leap0_dev.controlplane.plan import (
    COMPONENTS,
    Layout,
    Ports,
    command,
    forbidden,
    health_url,
    kubeconfig,
    token_kubeconfig,
)

PORTS = Ports(apiserver=6443, etcd_client=2379, etcd_peer=2380, controller_manager=10257, scheduler=10259)
LAYOUT = Layout(Path("/data"))
BIN = Path("/bin-folder")


def flags(argv: list[str]) -> dict[str, str]:
    return dict(arg[2:].split("=", 1) for arg in argv[1:])


def test_the_pinned_versions_come_from_the_modules_go_mod() -> None:
    versions = build.versions()
    assert versions == build.Versions(kubernetes="v1.36.3", etcd="v3.6.16", helm="v4.3.2")
    assert versions.key == "k8s-v1.36.3_etcd-v3.6.16_helm-v4.3.2"


def test_every_staging_module_is_replaced_by_its_release_of_the_same_kubernetes_version() -> None:
    go_mod = (build.MODULES_DIR / "kube" / "go.mod").read_text()
    replaced = [line.split() for line in go_mod.splitlines() if "=>" in line]
    assert len(replaced) > 25
    for module, arrow, target, version in replaced:
        assert (arrow, target, version) == ("=>", module, "v0.36.3")


def test_the_cache_key_changes_with_any_file_of_the_modules() -> None:
    files = build.module_files()
    versions = build.versions()
    key = build.cache_key(versions, files)
    assert key.startswith(versions.key + "_")
    assert build.cache_key(versions, dict(files)) == key
    changed = {**files, "kube/main.go": files["kube/main.go"] + b"\n"}
    assert build.cache_key(versions, changed) != key


def test_the_cache_is_outside_the_repository_under_xdg_cache_home() -> None:
    assert build.cache_root({"XDG_CACHE_HOME": "/c"}) == Path("/c/leap0/control-plane")
    assert build.cache_root({"HOME": "/h"}).parts[-2:] == ("leap0", "control-plane")
    assert build.cache_root({build.CACHE_ENV: "/x"}) == Path("/x")


def test_the_api_server_is_stamped_with_its_real_version_for_both_version_packages() -> None:
    ldflags = build.kube_ldflags("v1.36.3")
    for package in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version"):
        for flag in ("gitVersion=v1.36.3", "gitMajor=1", "gitMinor=36", "gitTreeState=clean"):
            assert f"-X {package}.{flag}" in ldflags
    with pytest.raises(build.BuildError):
        build.kube_ldflags("1.36")


def test_the_plan_builds_only_what_is_missing_and_links_the_three_kube_names() -> None:
    versions = build.versions()
    all_steps = build.plan_build(versions, Path("/m"), set(build.BINARIES))
    assert [step.name for step in all_steps] == ["kube", "etcd", "helm"]
    (kube,) = build.plan_build(versions, Path("/m"), {"kube-scheduler"})
    assert kube.links == ("kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert kube.cwd == Path("/m/kube")
    (helm,) = build.plan_build(versions, Path("/m"), {"helm"})
    assert helm.argv[-1] == "helm.sh/helm/v4/cmd/helm"
    assert "helm.sh/helm/v4/internal/version.version=v4.3.2" in " ".join(helm.argv)
    assert build.plan_build(versions, Path("/m"), set()) == []


def _executables(folder: Path, names: tuple[str, ...]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_text("#!/bin/sh\n")
        (folder / name).chmod(stat.S_IRWXU)


def test_kubebuilder_assets_is_used_as_it_is(tmp_path: Path) -> None:
    _executables(tmp_path / "assets", build.BINARIES)
    env = {build.ASSETS_ENV: str(tmp_path / "assets"), "PATH": ""}
    assert build.ensure_binaries(env) == tmp_path / "assets"


def test_kubebuilder_assets_of_setup_envtest_alone_names_what_it_lacks(tmp_path: Path) -> None:
    _executables(tmp_path / "assets", ("kube-apiserver", "etcd", "kubectl"))
    env = {build.ASSETS_ENV: str(tmp_path / "assets"), "PATH": ""}
    with pytest.raises(build.BuildError) as err:
        build.ensure_binaries(env)
    assert err.value.exit_code == 2
    assert "lacks helm, kube-controller-manager, kube-scheduler" in str(err.value)


def test_without_go_nor_assets_it_says_what_to_install(tmp_path: Path) -> None:
    env = {build.CACHE_ENV: str(tmp_path / "cache"), "PATH": str(tmp_path / "empty")}
    with pytest.raises(build.BuildError) as err:
        build.ensure_binaries(env)
    assert err.value.exit_code == 2
    assert "install Go 1.26 or newer" in str(err.value)
    assert build.ASSETS_ENV in str(err.value)


def test_a_complete_cache_needs_no_go(tmp_path: Path) -> None:
    env = {build.CACHE_ENV: str(tmp_path / "cache"), "PATH": ""}
    folder = build.cache_dir(env=env)
    _executables(folder, build.BINARIES)
    assert build.ensure_binaries(env) == folder
    assert build.missing_in(folder) == set()
    (folder / "helm").chmod(stat.S_IRUSR)
    assert build.missing_in(folder) == {"helm"}  # not executable: built again


def test_the_components_start_in_order_each_with_its_health_endpoint() -> None:
    assert COMPONENTS == ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
    assert health_url("etcd", PORTS) == "http://127.0.0.1:2379/health"
    assert health_url("kube-apiserver", PORTS) == "https://127.0.0.1:6443/readyz"
    assert health_url("kube-controller-manager", PORTS) == "https://127.0.0.1:10257/healthz"
    assert health_url("kube-scheduler", PORTS) == "https://127.0.0.1:10259/healthz"


def test_the_api_server_runs_with_rbac_the_default_admission_plugins_and_token_signing() -> None:
    argv = command("kube-apiserver", BIN, LAYOUT, PORTS)
    assert argv[0] == "/bin-folder/kube-apiserver"
    got = flags(argv)
    assert got["authorization-mode"] == "Node,RBAC"
    assert "disable-admission-plugins" not in got  # ServiceAccount, PodSecurity, ... stay on
    assert got["etcd-servers"] == "http://127.0.0.1:2379"
    assert (got["bind-address"], got["secure-port"]) == ("127.0.0.1", "6443")
    assert got["service-account-signing-key-file"] == "/data/pki/sa.key"
    assert got["service-account-key-file"] == "/data/pki/sa.pub"
    assert got["client-ca-file"] == "/data/pki/ca.crt"


def test_the_controller_manager_gets_the_signing_key_and_root_ca() -> None:
    got = flags(command("kube-controller-manager", BIN, LAYOUT, PORTS))
    assert got["service-account-private-key-file"] == "/data/pki/sa.key"
    assert got["root-ca-file"] == "/data/pki/ca.crt"
    assert got["use-service-account-credentials"] == "true"
    assert got["kubeconfig"] == "/data/kube-controller-manager.kubeconfig"
    assert got["secure-port"] == "10257"
    scheduler = flags(command("kube-scheduler", BIN, LAYOUT, PORTS))
    assert scheduler["kubeconfig"] == "/data/kube-scheduler.kubeconfig"
    assert scheduler["leader-elect"] == "false"


def test_etcd_listens_on_loopback_only() -> None:
    got = flags(command("etcd", BIN, LAYOUT, PORTS))
    assert got["listen-client-urls"] == "http://127.0.0.1:2379"
    assert got["listen-peer-urls"] == "http://127.0.0.1:2380"
    assert got["data-dir"] == "/data/etcd"


def test_kubeconfigs_carry_the_ca_and_the_users_credentials() -> None:
    ca = pki.new_ca()
    admin = pki.issue(ca, "kubernetes-admin", ("system:masters",))
    cert = x509.load_pem_x509_certificate(admin.cert)
    assert cert.subject.rfc4514_string() == "CN=kubernetes-admin,O=system:masters"
    document = yaml.safe_load(yaml.safe_dump(kubeconfig("https://h:1", ca.cert, admin.cert, admin.key, "me")))
    assert document["clusters"][0]["cluster"]["server"] == "https://h:1"
    assert document["users"][0]["name"] == "me"
    token = token_kubeconfig("https://h:1", ca.cert, "abc", "sa")
    assert token["users"] == [{"name": "sa", "user": {"token": "abc"}}]


def test_the_serving_certificate_names_loopback() -> None:
    ca = pki.new_ca()
    serving = pki.issue(
        ca, "kube-apiserver", dns_names=("localhost",), ip_addresses=("127.0.0.1",), server=True
    )
    cert = x509.load_pem_x509_certificate(serving.cert)
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]


def test_the_serving_certificate_names_the_service_account_issuer_as_kubeadm_does() -> None:
    """An OIDC verifier of service-account tokens reaches the issuer by its name, over TLS."""
    assert urllib.parse.urlparse(plan.SERVICE_ACCOUNT_ISSUER).hostname in plan.APISERVER_DNS_NAMES


def test_only_what_authorization_refused_counts_as_forbidden() -> None:
    def event(user: str, decision: str, code: int, verb: str = "create") -> dict[str, Any]:
        return {
            "user": {"username": user},
            "verb": verb,
            "objectRef": {"namespace": "ns", "resource": "pods", "name": "p"},
            "responseStatus": {"code": code},
            "annotations": {"authorization.k8s.io/decision": decision},
        }

    events = [
        event("op", "forbid", 403),
        event("op", "allow", 403),  # PodSecurity admission refused the pod: the operator may ask
        event("op", "allow", 201),
        event("someone", "forbid", 403, "list"),
    ]
    assert forbidden(events, "op") == ["create ns/pods/p: 403"]
    assert forbidden(events, "nobody") == []
