"""deploy/k8s: every manifest validates offline against the Kubernetes schemas, plus the
probes, hardening and wiring the service relies on. Overlays: referenced files exist,
patches target base objects and validate once merged; rendered with `kubectl kustomize`
where kubectl is installed (it needs no cluster and no network for local paths)."""

from __future__ import annotations

import copy
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.deploy import DEPLOY

K8S = DEPLOY / "k8s"
BASE = K8S / "base"
OVERLAYS = sorted(p for p in (K8S / "overlays").iterdir() if p.is_dir())
# Oldest supported cluster: the preStop `sleep` action is on by default from 1.30.
K8S_VERSION = "1.30.0"
# Must stay in sync with the image's USER.
APP_UID = 10001

Manifest = dict[str, Any]


def _kustomization(directory: Path) -> dict[str, Any]:
    data = yaml.safe_load((directory / "kustomization.yaml").read_text())
    assert data["apiVersion"] == "kustomize.config.k8s.io/v1beta1"
    assert data["kind"] == "Kustomization"
    return data


def _load_all(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _validate(doc: Manifest, where: str) -> None:
    try:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        # The library's str() dumps the whole schema; the message and path are enough.
        location = "/".join(str(part) for part in err.absolute_path)
        pytest.fail(f"{where}: {doc['kind']} {location}: {err.message}")


def _base_docs() -> list[tuple[str, Manifest]]:
    return [
        (name, doc) for name in _kustomization(BASE)["resources"] for doc in _load_all(BASE / name)
    ]


BASE_DOCS = _base_docs()


def _one(kind: str) -> Manifest:
    (doc,) = [doc for _, doc in BASE_DOCS if doc["kind"] == kind]
    return doc


@pytest.mark.parametrize(
    "doc", [doc for _, doc in BASE_DOCS], ids=[f"{n}:{d['kind']}" for n, d in BASE_DOCS]
)
def test_base_manifest_validates(doc: Manifest) -> None:
    _validate(doc, "base")


def test_base_has_every_kind() -> None:
    kinds = sorted(doc["kind"] for _, doc in BASE_DOCS)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Job",
            "NetworkPolicy",
            "PodDisruptionBudget",
            "Secret",
            "Service",
        ]
    )


# ---------------------------------------------------------------------------- Deployment


@pytest.fixture(scope="module")
def deployment() -> Manifest:
    return _one("Deployment")


@pytest.fixture(scope="module")
def container(deployment: Manifest) -> Manifest:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container


def test_deployment_shape(deployment: Manifest) -> None:
    spec = deployment["spec"]
    assert spec["replicas"] == 2
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


def test_probes(container: Manifest) -> None:
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000}
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["port"] == "http"


def test_resources(container: Manifest) -> None:
    for bound in ("requests", "limits"):
        assert {"cpu", "memory"} <= container["resources"][bound].keys()


def _assert_hardened(pod_spec: Manifest, container: Manifest) -> None:
    pod = pod_spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] == APP_UID
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctx = container["securityContext"]
    assert ctx["runAsNonRoot"] is True
    assert ctx["runAsUser"] == APP_UID
    assert ctx["readOnlyRootFilesystem"] is True
    assert ctx["allowPrivilegeEscalation"] is False
    assert ctx["capabilities"] == {"drop": ["ALL"]}
    assert ctx["seccompProfile"] == {"type": "RuntimeDefault"}
    assert pod_spec["automountServiceAccountToken"] is False
    # A read-only root still needs a scratch /tmp.
    volumes = {v["name"]: v for v in pod_spec["volumes"]}
    (tmp,) = [m for m in container["volumeMounts"] if m["mountPath"] == "/tmp"]
    assert "emptyDir" in volumes[tmp["name"]]


def test_deployment_is_hardened(deployment: Manifest, container: Manifest) -> None:
    _assert_hardened(deployment["spec"]["template"]["spec"], container)


def test_graceful_shutdown_fits_the_grace_period(deployment: Manifest, container: Manifest) -> None:
    pod_spec = deployment["spec"]["template"]["spec"]
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = int(_one("ConfigMap")["data"]["CAREPLAN_GRACEFUL_SHUTDOWN_SECONDS"])
    assert pre_stop > 0
    assert pod_spec["terminationGracePeriodSeconds"] > pre_stop + drain


def test_settings_come_from_configmap_and_secret(container: Manifest) -> None:
    sources = {ref: src[ref]["name"] for src in container["envFrom"] for ref in src}
    assert sources == {
        "configMapRef": _one("ConfigMap")["metadata"]["name"],
        "secretRef": _one("Secret")["metadata"]["name"],
    }


def test_configmap_holds_no_secret() -> None:
    data = _one("ConfigMap")["data"]
    assert "CAREPLAN_DATABASE_URL" not in data
    assert all(isinstance(v, str) for v in data.values())
    assert data["CAREPLAN_MIGRATE_ON_START"] == "false", "the Job migrates, not every replica"
    assert data["CAREPLAN_WORKERS"] == "1", "one worker per pod: one metrics registry each"


@pytest.mark.parametrize("overlay", [BASE, *OVERLAYS], ids=lambda p: p.name)
def test_connections_at_max_replicas_fit_a_default_postgresql(overlay: Path) -> None:
    """Every pod at the HPA's ceiling, each with its pool and overflow full, stays under
    PostgreSQL's default max_connections (100), leaving 10 for the Job and an operator."""
    data = dict(_one("ConfigMap")["data"])
    hpa = _one("HorizontalPodAutoscaler")
    if overlay != BASE:
        for doc in _load_all(overlay / "configmap.yaml"):
            data.update(doc.get("data") or {})
        if (overlay / "hpa.yaml").exists():
            hpa = _load_all(overlay / "hpa.yaml")[0]
    per_pod = int(data["CAREPLAN_DB_POOL_SIZE"]) + int(data["CAREPLAN_DB_MAX_OVERFLOW"])
    assert hpa["spec"]["maxReplicas"] * per_pod <= 90


def test_secret_is_a_documented_placeholder() -> None:
    secret = _one("Secret")
    url = secret["stringData"]["CAREPLAN_DATABASE_URL"]
    assert url.startswith("postgresql+psycopg://")
    assert "CHANGE_ME" in url


# ---------------------------------------------------------------------------- the rest


def test_service_targets_the_pods(deployment: Manifest) -> None:
    service = _one("Service")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_migration_job(container: Manifest) -> None:
    job = _one("Job")
    spec = job["spec"]
    assert spec["backoffLimit"] >= 1
    assert spec["ttlSecondsAfterFinished"] > 0
    pod_spec = spec["template"]["spec"]
    assert pod_spec["restartPolicy"] == "Never"
    (migrate,) = pod_spec["containers"]
    assert migrate.get("command", []) + migrate.get("args", []) == ["careplan", "migrate"]
    assert migrate["image"] == container["image"], "migrate with the image that will serve"
    assert migrate["envFrom"] == container["envFrom"]
    _assert_hardened(pod_spec, migrate)


def test_pdb_and_hpa_target_the_deployment(deployment: Manifest) -> None:
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment["metadata"]["name"],
    }
    assert hpa["spec"]["minReplicas"] <= deployment["spec"]["replicas"]
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"


def _ports(rules: list[Manifest]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for rule in rules for p in rule["ports"]}


def test_network_policy(deployment: Manifest) -> None:
    policy = _one("NetworkPolicy")["spec"]
    selector = policy["podSelector"]["matchLabels"].items()
    assert selector <= deployment["spec"]["template"]["metadata"]["labels"].items()
    assert selector <= _one("Job")["spec"]["template"]["metadata"]["labels"].items()
    assert sorted(policy["policyTypes"]) == ["Egress", "Ingress"]
    assert _ports(policy["ingress"]) == {("TCP", 8000)}
    # PostgreSQL, DNS, and HTTPS for subscription notifications.
    assert _ports(policy["egress"]) == {("TCP", 5432), ("UDP", 53), ("TCP", 53), ("TCP", 443)}


# ---------------------------------------------------------------------------- overlays


def _merge(base: Any, patch: Any) -> Any:
    """Just enough strategic merge for these patches: maps merge, lists of named maps merge
    by name, anything else is replaced."""
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else value
        return merged
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        by_name = {item["name"]: item for item in base}
        for item in patch:
            by_name[item["name"]] = _merge(by_name.get(item["name"], {}), item)
        return list(by_name.values())
    return copy.deepcopy(patch)


def _base_object(kind: str, name: str) -> Manifest:
    matches = [d for _, d in BASE_DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"no base {kind}/{name} to patch"
    return matches[0]


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_overlay_files_exist_and_validate(overlay: Path) -> None:
    kustomization = _kustomization(overlay)
    assert kustomization["namespace"] == f"careplan-{overlay.name}"
    for resource in kustomization["resources"]:
        path = (overlay / resource).resolve()
        assert path.exists(), f"{overlay.name}: missing resource {resource}"
        if path.is_dir():
            assert (path / "kustomization.yaml").is_file()
        else:
            for doc in _load_all(path):
                _validate(doc, f"{overlay.name}/{resource}")
    for entry in kustomization.get("patches", []):
        path = overlay / entry["path"]
        assert path.is_file(), f"{overlay.name}: missing patch {entry['path']}"
        (patch,) = _load_all(path)
        base = _base_object(patch["kind"], patch["metadata"]["name"])
        if patch.get("$patch") == "delete":
            continue
        _validate(_merge(base, patch), f"{overlay.name}/{entry['path']} merged")


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_overlay_image_and_replicas(overlay: Path, container: Manifest) -> None:
    kustomization = _kustomization(overlay)
    base_image = container["image"].split(":")[0]
    (image,) = kustomization["images"]
    assert image["name"] == base_image, "the override must match the base image name"
    assert image.get("newTag") or image.get("digest")
    assert image.get("newTag") != "latest"
    (replicas,) = kustomization["replicas"]
    assert replicas["name"] == _one("Deployment")["metadata"]["name"]


def test_prod_pins_a_release_and_keeps_secrets_out() -> None:
    kustomization = _kustomization(K8S / "overlays" / "prod")
    (image,) = kustomization["images"]
    assert image.get("digest") or str(image["newTag"])[0].isdigit()
    overlay = K8S / "overlays" / "prod"
    patches = [_load_all(overlay / entry["path"])[0] for entry in kustomization["patches"]]
    deleted = [(p["kind"], p["metadata"]["name"]) for p in patches if p.get("$patch") == "delete"]
    # Applying the base placeholder would overwrite the real, out-of-band Secret.
    assert deleted == [("Secret", _one("Secret")["metadata"]["name"])]


# ---------------------------------------------------------------------------- rendering


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl not installed: overlays are not rendered")
    return kubectl


@pytest.mark.parametrize("overlay", OVERLAYS, ids=[o.name for o in OVERLAYS])
def test_rendered_overlay_validates(overlay: Path) -> None:
    result = subprocess.run(
        [_kubectl(), "kustomize", str(overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    namespace = f"careplan-{overlay.name}"
    kustomization = _kustomization(overlay)
    (image,) = kustomization["images"]
    for doc in docs:
        _validate(doc, f"{overlay.name} rendered")
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    job = next(d for d in docs if d["kind"] == "Job")
    (replicas,) = kustomization["replicas"]
    assert deployment["spec"]["replicas"] == replicas["count"]
    for workload in (deployment, job):
        (rendered,) = workload["spec"]["template"]["spec"]["containers"]
        assert rendered["image"].startswith(f"{image['newName']}:")
    hpa = next(d for d in docs if d["kind"] == "HorizontalPodAutoscaler")
    assert hpa["spec"]["minReplicas"] <= replicas["count"] <= hpa["spec"]["maxReplicas"]
    secrets = [d for d in docs if d["kind"] == "Secret"]
    assert (secrets == []) == (overlay.name == "prod")


def test_tokens_are_required_and_the_auth_secrets_are_in_the_secret() -> None:
    from service.usecases.authorization import trusted_issuers

    config = _one("ConfigMap")["data"]
    assert config["CAREPLAN_AUTH"] == "required"
    for secret_name in (
        "CAREPLAN_AUTH_ISSUERS",
        "CAREPLAN_AUTH_KEY_ENCRYPTION_KEY",
        "CAREPLAN_METRICS_TOKEN",
    ):
        assert secret_name not in config
    secret = _one("Secret")["stringData"]
    # A valid, empty issuer list: only the built-in server until the operator adds one.
    assert trusted_issuers(secret["CAREPLAN_AUTH_ISSUERS"], "https://x.example.org/fhir") == []
    # Placeholders the service refuses to start with, so they are never left in place.
    assert secret["CAREPLAN_AUTH_KEY_ENCRYPTION_KEY"] == "CHANGE_ME"
    assert secret["CAREPLAN_METRICS_TOKEN"] == "CHANGE_ME"


def test_the_secret_placeholders_are_refused_at_start_up() -> None:
    from pydantic import ValidationError

    from service.settings import Settings
    from service.usecases.authorization import AuthConfigError, check_key_encryption_key

    secret = _one("Secret")["stringData"]
    with pytest.raises(AuthConfigError, match="CAREPLAN_AUTH_KEY_ENCRYPTION_KEY"):
        check_key_encryption_key(secret["CAREPLAN_AUTH_KEY_ENCRYPTION_KEY"])
    with pytest.raises(ValidationError, match="metrics_token"):
        Settings(metrics_token=secret["CAREPLAN_METRICS_TOKEN"])
