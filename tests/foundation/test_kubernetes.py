"""deploy/: the kustomize overlay rendered offline, validated against Kubernetes' schemas, and checked
for what running N instances needs (probes, drain, disruption budget, autoscaler, secrets, WebSockets).

No kustomize binary is needed: the renderer below implements the subset deploy/ uses (resources,
namespace, images, JSON 6902 patches) and refuses any other kustomization field, so an overlay
cannot grow a feature that this test would silently skip.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import jsonpatch
import kubernetes_validate
import pytest
import yaml

from service.settings import SECRET_FIELDS, Settings, env_name, production_env
from tests.conftest import ROOT

DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
KUBERNETES_VERSION = "1.30.0"  # the oldest release the manifests promise to work on
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "images", "patches"}


def render(folder: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((folder / "kustomization.yaml").read_text())
    assert set(kustomization) <= SUPPORTED, f"{folder}: unsupported kustomization fields {set(kustomization) - SUPPORTED}"
    docs: list[dict[str, Any]] = []
    for entry in kustomization.get("resources", []):
        path = (folder / entry).resolve()
        docs.extend(render(path) if path.is_dir() else [d for d in yaml.safe_load_all(path.read_text()) if d])
    docs = copy.deepcopy(docs)
    for patch in kustomization.get("patches", []):
        target = patch["target"]
        matches = [i for i, d in enumerate(docs) if d["kind"] == target["kind"] and d["metadata"]["name"] == target["name"]]
        assert len(matches) == 1, f"patch target {target} matches {len(matches)} resources"
        docs[matches[0]] = jsonpatch.apply_patch(docs[matches[0]], yaml.safe_load(patch["patch"]))
    for image in kustomization.get("images", []):
        for pod in filter(None, map(_pod_spec, docs)):
            for container in pod.get("containers", []) + pod.get("initContainers", []):
                name, _, tag = container["image"].partition(":")
                if name == image["name"]:
                    container["image"] = f"{image.get('newName', name)}:{image.get('newTag', tag or 'latest')}"
    if "namespace" in kustomization:
        for doc in docs:
            doc["metadata"]["namespace"] = kustomization["namespace"]
    return docs


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    return doc["spec"]["template"]["spec"] if doc["kind"] in ("Deployment", "Job") else None


def _one(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind]
    assert len(found) == 1, kind
    return found[0]


@pytest.fixture(scope="module", params=OVERLAYS, ids=lambda p: p.name)
def rendered(request) -> list[dict[str, Any]]:
    return render(request.param)


def test_there_is_an_overlay():
    assert [p.name for p in OVERLAYS] == ["production"]


def test_every_manifest_is_valid_against_the_kubernetes_schemas(rendered):
    for doc in rendered:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)  # strict: unknown fields too
    assert {d["kind"] for d in rendered} == {"Deployment", "Service", "Ingress", "PodDisruptionBudget", "HorizontalPodAutoscaler", "Job"}


def test_a_mistake_is_caught_by_the_schemas(rendered):
    broken = copy.deepcopy(_one(rendered, "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/readyz"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_deployment_runs_n_instances_that_drain_before_they_stop(rendered):
    deployment = _one(rendered, "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert deployment["spec"]["replicas"] >= 2 and deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["resources"]["requests"] and container["resources"]["limits"]["memory"]
    env = {e["name"]: e.get("value") for e in container["env"]}
    drain = int(env.get("QSITE_SHUTDOWN_DRAIN_SECONDS") or Settings().shutdown_drain_seconds)
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain
    assert container["args"] == ["serve"] and container["image"] == "registry.example.org/qsite:1.0.0"
    assert env["QSITE_TRUSTED_PROXIES"] == "10.0.0.0/8"
    assert pod["securityContext"]["runAsNonRoot"] and container["securityContext"]["readOnlyRootFilesystem"]
    labels = pod.get("metadata", deployment["spec"]["template"]["metadata"]).get("labels")
    for kind in ("Service", "PodDisruptionBudget"):
        doc = _one(rendered, kind)
        selector = doc["spec"]["selector"].get("matchLabels", doc["spec"]["selector"])
        assert selector.items() <= labels.items(), kind
    hpa = _one(rendered, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"] and hpa["spec"]["minReplicas"] >= 2
    assert _one(rendered, "PodDisruptionBudget")["spec"]["maxUnavailable"] < hpa["spec"]["minReplicas"]


def _secret_files(pod: dict[str, Any]) -> dict[str, str]:
    """mounted path -> Secret key, for the Secret volumes of a pod."""
    mounts = {m["name"]: m["mountPath"] for c in pod["containers"] for m in c.get("volumeMounts", [])}
    return {
        f"{mounts[v['name']]}/{item['path']}": item["key"]
        for v in pod["volumes"] if "secret" in v
        for item in v["secret"]["items"]
    }


def test_secrets_are_files_from_the_secret_gen_secrets_fills(rendered):
    generated = set(production_env(database_host="db:5432/qsite", redis_url="redis://r:6379/0"))
    for kind, needs in (("Deployment", set()), ("Job", {"QSITE_MIGRATION_DATABASE_URL"})):
        pod = _pod_spec(_one(rendered, kind))
        files = _secret_files(pod)
        assert {v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v} == {"qsite"}
        env = {e["name"]: e["value"] for c in pod["containers"] for e in c["env"]}
        read = {files[path] for name, path in env.items() if name.endswith("_FILE")}
        assert read <= generated  # every key the pods read is one `qsite gen-secrets` writes
        assert {env_name(f) for f in ("database_url", "redis_url", *SECRET_FIELDS)} | needs <= read, kind
        assert not any(e.get("valueFrom") for c in pod["containers"] for e in c["env"])
    # The app's pods never see the schema owner's credentials.
    assert "QSITE_MIGRATION_DATABASE_URL" not in _secret_files(_pod_spec(_one(rendered, "Deployment"))).values()


def test_migration_job_migrates_and_the_ingress_carries_websockets(rendered):
    job = _one(rendered, "Job")
    assert _pod_spec(job)["containers"][0]["args"] == ["migrate"] and _pod_spec(job)["restartPolicy"] == "Never"
    ingress = _one(rendered, "Ingress")
    annotations = ingress["metadata"]["annotations"]
    # nginx closes a proxied WebSocket idle for proxy-read-timeout (60 s by default).
    assert int(annotations["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 3600
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    service = _one(rendered, "Service")
    assert backend["name"] == service["metadata"]["name"] and backend["port"]["name"] in {p["name"] for p in service["spec"]["ports"]}
    assert ingress["spec"]["rules"][0]["host"] == ingress["spec"]["tls"][0]["hosts"][0] == "qsite.city.example"
    assert all(d["metadata"]["namespace"] == "qsite" for d in rendered)
    # PostgreSQL and Redis are external: no StatefulSet or database pod in the rendered set.
    assert not [d for d in rendered if d["kind"] in ("StatefulSet", "Pod")]
