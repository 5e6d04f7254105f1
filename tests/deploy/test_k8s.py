"""Fleet manifests (deploy/k8s): valid against the Kubernetes schemas, offline, and consistent
with the image, the settings and the command line they drive."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import REPO
from tests.deploy.conftest import DEPLOY, parse_cli, settings_from_env

K8S = DEPLOY / "k8s"
KUBERNETES_VERSION = "1.30.0"  # oldest supported minor we target; the schemas ship offline


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _manifests() -> list[tuple[Path, dict[str, Any]]]:
    return [
        (path, doc)
        for path in sorted(K8S.glob("*.yaml"))
        if path.name != "kustomization.yaml"
        for doc in _documents(path)
    ]


def _ops_manifests() -> list[tuple[Path, dict[str, Any]]]:
    """One-off jobs under deploy/k8s/ops, created on demand rather than kept applied."""
    return [
        (path, doc) for path in sorted((K8S / "ops").glob("*.yaml")) for doc in _documents(path)
    ]


def _one(kind: str) -> dict[str, Any]:
    (found,) = [doc for _, doc in _manifests() if doc["kind"] == kind]
    return found


def _pod_spec(kind: str) -> dict[str, Any]:
    doc = _one(kind)
    template = doc["spec"]["jobTemplate"]["spec"] if kind == "CronJob" else doc["spec"]
    spec: dict[str, Any] = template["template"]["spec"]
    return spec


def _image_user() -> tuple[int, int]:
    """The serving stage's USER in the Dockerfile (uid, gid)."""
    text = (REPO / "Dockerfile").read_text(encoding="utf-8")
    serving = text.split("AS serving", 1)[1]
    uid, gid = re.findall(r"^USER (\d+):(\d+)$", serving, flags=re.M)[0]
    return int(uid), int(gid)


@pytest.mark.parametrize(
    ("path", "doc"),
    _manifests() + _ops_manifests(),
    ids=[f"{p.name}:{d['kind']}" for p, d in _manifests() + _ops_manifests()],
)
def test_manifest_is_valid_against_the_kubernetes_schema(path: Path, doc: dict[str, Any]) -> None:
    """Strict schema validation (unknown fields are errors) with the schemas the package ships."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install kubernetes-validate)",
    )
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(f"{path.name} {doc['kind']}: {where}: {exc.message}")


def test_strict_validation_catches_a_misspelt_field() -> None:
    """The validator is not vacuous: a typo in a security setting is refused."""
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate",
        reason="kubernetes-validate not installed (pip install kubernetes-validate)",
    )
    deployment = _one("Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "readOnlyRootFileSystem"
    ] = True
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSION, strict=True)


def test_kustomization_lists_every_manifest() -> None:
    """`kubectl apply -k deploy/k8s` applies all of them and nothing else."""
    kustomization = _documents(K8S / "kustomization.yaml")[0]
    files = {p.name for p in K8S.glob("*.yaml")} - {"kustomization.yaml"}
    assert sorted(kustomization["resources"]) == sorted(files)
    images = {i["name"] for i in kustomization["images"]}
    used = {c["image"] for kind in ("Deployment", "CronJob") for c in _pod_spec(kind)["containers"]}
    assert used == images == {"softsensor", "softsensor-training"}


def test_no_secret_is_committed() -> None:
    """The admin token is referenced from a Secret created in the cluster, never stored here."""
    assert all(doc["kind"] != "Secret" for _, doc in _manifests())
    (container,) = _pod_spec("Deployment")["containers"]
    (token,) = [e for e in container["env"] if e["name"] == "SOFTSENSOR_ADMIN_TOKEN"]
    ref = token["valueFrom"]["secretKeyRef"]
    assert ref["name"] == "softsensor-admin" and ref["key"] == "token"


@pytest.mark.parametrize("kind", ["Deployment", "CronJob"])
def test_pods_are_locked_down(kind: str) -> None:
    """Non-root as the image's user, read-only root, no privilege escalation, no capabilities,
    a writable /tmp from an emptyDir."""
    spec = _pod_spec(kind)
    uid, gid = _image_user()
    pod = spec["securityContext"]
    assert pod["runAsNonRoot"] is True
    assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["automountServiceAccountToken"] is False
    volumes = {v["name"]: v for v in spec["volumes"]}
    for container in spec["containers"]:
        security = container["securityContext"]
        assert security["readOnlyRootFilesystem"] is True
        assert security["allowPrivilegeEscalation"] is False
        assert security["capabilities"] == {"drop": ["ALL"]}
        assert container["resources"]["requests"] and container["resources"]["limits"]
        mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]


def test_deployment_probes_and_volumes() -> None:
    """Readiness on /v2/health/ready, liveness on /v2/health/live; registry read-only."""
    (container,) = _pod_spec("Deployment")["containers"]
    port = container["ports"][0]
    assert (port["name"], port["containerPort"]) == ("http", 8000)
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/models"]["readOnly"] is True
    assert set(mounts) == {"/models", "/tmp"}  # no state on the pod's disk
    volumes = {v["name"]: v for v in _pod_spec("Deployment")["volumes"]}
    claim = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]
    assert claim == {"claimName": "softsensor-models", "readOnly": True}


def test_configmap_is_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The ConfigMap holds real settings that validate, matching the pod's ports and mounts."""
    config = _one("ConfigMap")
    (container,) = _pod_spec("Deployment")["containers"]
    assert container["envFrom"] == [{"configMapRef": {"name": config["metadata"]["name"]}}]
    settings = settings_from_env(config["data"], monkeypatch)
    assert settings.port == container["ports"][0]["containerPort"]
    assert settings.host == "0.0.0.0"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert str(settings.registry) in mounts
    assert settings.state_url is None  # from the Secret, never in the ConfigMap
    assert settings.models and settings.default_model in settings.models


def _state_url_env(container: dict[str, Any]) -> dict[str, Any]:
    (env,) = [e for e in container["env"] if e["name"] == "SOFTSENSOR_STATE_URL"]
    found: dict[str, Any] = env
    return found


def test_state_is_shared_through_a_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every serving pod and the retraining job reach one database, its URL from the Secret
    softsensor-state (required); no lab result on a pod's emptyDir; no session affinity; the
    HPA's most pods times the pool fit PostgreSQL's default 100 connections."""
    (serving,) = _pod_spec("Deployment")["containers"]
    ref = _state_url_env(serving)["valueFrom"]["secretKeyRef"]
    assert (ref["name"], ref["key"]) == ("softsensor-state", "url")
    assert not ref.get("optional", False)
    empty = {v["name"] for v in _pod_spec("Deployment")["volumes"] if "emptyDir" in v}
    assert [m["mountPath"] for m in serving["volumeMounts"] if m["name"] in empty] == ["/tmp"]
    assert _one("Service")["spec"].get("sessionAffinity", "None") == "None"
    settings = settings_from_env(_one("ConfigMap")["data"], monkeypatch)
    hpa = _one("HorizontalPodAutoscaler")["spec"]
    assert hpa["maxReplicas"] * (settings.state_pool_size + 1) + 5 <= 100  # +1: the locks
    (job,) = _pod_spec("CronJob")["containers"]
    assert _state_url_env(job)["valueFrom"]["secretKeyRef"] == ref
    args = parse_cli(job["args"])
    assert args.lab_results == "$(SOFTSENSOR_STATE_URL)"  # Kubernetes expands it from env


def test_service_and_hpa_target_the_deployment() -> None:
    """The Service selects the serving pods; the HPA (autoscaling/v2) scales the Deployment."""
    deployment = _one("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    service = _one("Service")
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == "http"
    hpa = _one("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    target = hpa["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])
    assert 1 <= hpa["spec"]["minReplicas"] <= hpa["spec"]["maxReplicas"]
    pdb = _one("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_cronjob_runs_a_valid_retrain_command() -> None:
    """The job's arguments parse with the real CLI and write the registry the pods read."""
    cronjob = _one("CronJob")["spec"]
    assert cronjob["concurrencyPolicy"] == "Forbid"
    assert cronjob["startingDeadlineSeconds"] > 0
    assert cronjob["successfulJobsHistoryLimit"] >= 1 and cronjob["failedJobsHistoryLimit"] >= 1
    spec = _pod_spec("CronJob")
    (container,) = spec["containers"]
    args = parse_cli(container["args"])
    assert args.command == "retrain" and args.name == "column_a"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert str(args.registry) == "/models" and not mounts["/models"].get("readOnly", False)
    volumes = {v["name"]: v for v in spec["volumes"]}
    claim = volumes[mounts["/models"]["name"]]["persistentVolumeClaim"]["claimName"]
    serving = {v["name"]: v for v in _pod_spec("Deployment")["volumes"]}
    assert claim == serving["models"]["persistentVolumeClaim"]["claimName"]
    for path in (args.spec, args.data, args.report_dir):
        assert any(str(path).startswith(m + "/") for m in mounts), f"{path} is not mounted"
    rejected = cronjob["jobTemplate"]["spec"]["podFailurePolicy"]["rules"][0]
    assert rejected["action"] == "FailJob" and 3 in rejected["onExitCodes"]["values"]


def test_every_claim_used_is_declared() -> None:
    """Pods mount only PersistentVolumeClaims the manifests create (ReadWriteMany: shared)."""
    claims = {
        doc["metadata"]["name"]: doc
        for _, doc in _manifests()
        if doc["kind"] == "PersistentVolumeClaim"
    }
    for kind in ("Deployment", "CronJob"):
        for volume in _pod_spec(kind)["volumes"]:
            if "persistentVolumeClaim" in volume:
                claim = claims[volume["persistentVolumeClaim"]["claimName"]]
                assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_rollback_job_runs_a_valid_command_on_the_shared_registry() -> None:
    """The on-demand rollback job parses with the real CLI, on the registry claim, locked down."""
    (job,) = [doc for _, doc in _ops_manifests() if doc["kind"] == "Job"]
    spec = job["spec"]["template"]["spec"]
    (container,) = spec["containers"]
    assert container["command"] == ["/opt/venv/bin/softsensor"]
    args = parse_cli(container["args"])
    assert (args.command, args.action, args.name, str(args.registry)) == (
        "models",
        "rollback",
        "column_a",
        "/models",
    )
    assert spec["securityContext"]["runAsUser"] == _image_user()[0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert volumes["models"]["persistentVolumeClaim"]["claimName"] == "softsensor-models"
