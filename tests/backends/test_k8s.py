"""Kubernetes manifests: every one valid against the pinned schemas in strict mode (unknown fields are
errors), the PrometheusRule against the operator's structure, and the properties the spec asks for."""

from __future__ import annotations

import dataclasses
import json
import re
from typing import Any

import pytest
import yaml

from mlspec.backends import BackendError, generate
from mlspec.backends.common import compiled_json
from mlspec.ir.spec import SecretRef
from tests.backends.support import SPECS, example, golden_files

kubernetes_validate = pytest.importorskip("kubernetes_validate")
jsonschema = pytest.importorskip("jsonschema")

K8S_VERSION = "1.33.0"  # the Kubernetes release whose schemas the manifests must satisfy
OWN_KINDS = {"PrometheusRule", "Kustomization", "InferenceService"}  # CRD / kustomize: no upstream schema, checked below

# The parts of monitoring.coreos.com/v1 PrometheusRule the operator reads, closed to unknown fields.
RULE_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"}, "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
            "namespace": {"type": "string"},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}}}},
        "spec": {"type": "object", "required": ["groups"], "additionalProperties": False, "properties": {
            "groups": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["name", "rules"], "additionalProperties": False, "properties": {
                    "name": {"type": "string", "minLength": 1}, "interval": {"type": "string"},
                    "rules": {"type": "array", "items": {
                        "type": "object", "required": ["alert", "expr"], "additionalProperties": False,
                        "properties": {
                            "alert": {"type": "string", "pattern": "^[A-Za-z_][A-Za-z0-9_]*$"},
                            "expr": {"type": "string", "minLength": 1},
                            "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w|y)$"},
                            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                            "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}}}}}}},
    },
}


# serving.kserve.io/v1beta1 InferenceService, from KServe's API types (pkg/apis/serving/v1beta1):
# PredictorSpec = one implementation (a framework spec, or PodSpec.containers for a custom predictor)
# + PodSpec (inline; its fields are checked below by validating them as a real pod template)
# + ComponentExtensionSpec (inline), closed to unknown fields.
KSERVE_FRAMEWORKS = ("sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml",
                     "lightgbm", "paddle", "model", "storageUris", "workerSpec")
KSERVE_PODSPEC = ("volumes", "initContainers", "containers", "ephemeralContainers", "restartPolicy",
                  "terminationGracePeriodSeconds", "activeDeadlineSeconds", "dnsPolicy", "nodeSelector",
                  "serviceAccountName", "serviceAccount", "automountServiceAccountToken", "nodeName", "hostNetwork",
                  "hostPID", "hostIPC", "shareProcessNamespace", "securityContext", "imagePullSecrets", "hostname",
                  "subdomain", "affinity", "schedulerName", "tolerations", "hostAliases", "priorityClassName",
                  "priority", "dnsConfig", "readinessGates", "runtimeClassName", "enableServiceLinks",
                  "preemptionPolicy", "overhead", "topologySpreadConstraints", "setHostnameAsFQDN", "os", "hostUsers",
                  "schedulingGates", "resourceClaims")
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_COUNT = {"type": "integer", "minimum": 0}
KSERVE_EXTENSION: dict[str, Any] = {
    "minReplicas": _COUNT, "maxReplicas": _COUNT, "scaleTarget": _COUNT,
    "scaleMetric": {"enum": ["cpu", "memory", "concurrency", "rps"]}, "containerConcurrency": _COUNT,
    "timeout": _COUNT, "canaryTrafficPercent": {"type": "integer", "minimum": 0, "maximum": 100},
    "logger": {"type": "object"}, "batcher": {"type": "object"}, "labels": _STRINGS, "annotations": _STRINGS,
    "deploymentStrategy": {"type": "object"},
}
ISVC_SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "serving.kserve.io/v1beta1"}, "kind": {"const": "InferenceService"},
        "metadata": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
            # KServe's name rule; `<name>-predictor` names the Deployment and Service it creates
            "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63 - len("-predictor")},
            "namespace": {"type": "string"}, "labels": _STRINGS, "annotations": _STRINGS}},
        "spec": {"type": "object", "required": ["predictor"], "additionalProperties": False, "properties": {
            "predictor": {"type": "object", "additionalProperties": False, "properties": {
                **{k: {} for k in KSERVE_FRAMEWORKS + KSERVE_PODSPEC}, **KSERVE_EXTENSION}},
            "transformer": {"type": "object"}, "explainer": {"type": "object"}}},
    },
}


def documents(name: str) -> list[tuple[str, dict[str, Any]]]:
    return [(path, doc) for path, text in golden_files(name, "k8s").items() for doc in yaml.safe_load_all(text)]


def by_kind(name: str, kind: str) -> list[dict[str, Any]]:
    return [d for _, d in documents(name) if d["kind"] == kind]


@pytest.mark.parametrize("name", SPECS)
def test_every_manifest_validates_strictly(name: str) -> None:
    docs = documents(name)
    kinds = {d["kind"] for _, d in docs}
    assert {"ConfigMap", "PersistentVolumeClaim", "CronJob", "PrometheusRule", "Kustomization"} <= kinds
    for _path, doc in docs:
        if doc["kind"] in OWN_KINDS:
            continue
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)  # raises on any error or unknown field
    for rule in by_kind(name, "PrometheusRule"):
        jsonschema.validate(rule, RULE_SCHEMA)
    (kustomization,) = by_kind(name, "Kustomization")
    assert sorted(kustomization["resources"]) == sorted(p for p in golden_files(name, "k8s") if p != "kustomization.yaml")


def test_strict_validation_rejects_an_unknown_field() -> None:
    (deployment,) = by_kind("churn", "Deployment")
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSION, strict=True)


def test_realtime_serve_becomes_a_hardened_autoscaled_deployment() -> None:
    spec, _ = example("fraud")
    serve = next(s for s in spec.serves if s.mode == "realtime")
    (deployment,) = by_kind("fraud", "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["readinessProbe"]["httpGet"]["path"] == "/ready" and c["livenessProbe"]["httpGet"]["path"] == "/health"
    assert set(c["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes[mounts["/workspace"]], "writable state lives in an emptyDir"
    assert c["args"][:3] == ["mlspec", "serve", "fraud.mlspec"] and c["args"][-4:] == ["--host", "0.0.0.0",
                                                                                     "--port", "8080"]
    (hpa,) = by_kind("fraud", "HorizontalPodAutoscaler")
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == serve.replicas == (3, 20)
    assert hpa["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    (service,) = by_kind("fraud", "Service")
    (pdb,) = by_kind("fraud", "PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], pdb["spec"]["selector"]["matchLabels"],
                     deployment["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()


def test_streaming_serve_becomes_a_hardened_deployment_without_service_or_autoscaler() -> None:
    spec, _ = example("sensors")
    (serve,) = [s for s in spec.serves if s.mode == "streaming"]
    files = golden_files("sensors", "k8s")
    docs = list(yaml.safe_load_all(files[f"stream-{serve.name}.yaml"]))
    assert [d["kind"] for d in docs] == ["Deployment", "PodDisruptionBudget"]
    assert not by_kind("sensors", "Service") and not by_kind("sensors", "HorizontalPodAutoscaler")
    deployment, pdb = docs
    assert deployment["spec"]["replicas"] == serve.replicas[0] == 2
    pod = deployment["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert c["args"] == ["mlspec", "stream", "sensors.mlspec", "--serve", serve.name, "--host", "0.0.0.0", "--port",
                         "8080"]
    # the streams' Redis URL is a Secret reference (the spec's online store is embedded), never a value
    (url,) = [e for e in c["env"] if e["name"] == "MLSPEC_STREAM_URL"]
    assert url == {"name": "MLSPEC_STREAM_URL", "valueFrom": {"secretKeyRef": {"name": "mlspec-sensors-secrets",
                                                                                "key": "MLSPEC_STREAM_URL"}}}
    assert "--from-literal=MLSPEC_STREAM_URL=..." in files["kustomization.yaml"]
    assert c["livenessProbe"]["httpGet"]["path"] == "/health" and c["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert set(c["resources"]) == {"requests", "limits"}
    assert pod["securityContext"]["runAsNonRoot"] is True and c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["allowPrivilegeEscalation"] is False and pod["automountServiceAccountToken"] is False
    assert deployment["metadata"]["annotations"]["mlspec.dev/stream-input"] == serve.input_stream == "sensor_readings"
    assert deployment["metadata"]["annotations"]["mlspec.dev/stream-output"] == serve.output_stream
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()
    # what runs there, and that an embedded online store is not shared by the replicas, is said where it runs
    assert "Each pod runs `mlspec stream`" in files[f"stream-{serve.name}.yaml"]
    assert "pods do not share history" in files[f"stream-{serve.name}.yaml"]
    shared = dataclasses.replace(spec, project=dataclasses.replace(spec.project, online_store="redis",
                                                                   online_store_url=SecretRef("SENSORS_REDIS")))
    files_shared = generate("k8s", shared, example("sensors")[1], "specs/sensors.mlspec")
    shared_deployment = next(yaml.safe_load_all(files_shared[f"stream-{serve.name}.yaml"]))
    (c,) = shared_deployment["spec"]["template"]["spec"]["containers"]
    assert [e["name"] for e in c["env"] if "secretKeyRef" in e.get("valueFrom", {})] == [
        "PLANT_ONCALL_WEBHOOK_URL", "SENSORS_REDIS"]  # the online store's Redis serves the streams too
    assert "online store's Redis" in files_shared[f"stream-{serve.name}.yaml"]
    single = dataclasses.replace(serve, replicas=(1, 4))
    single_spec = dataclasses.replace(spec, serves=tuple(single if s is serve else s for s in spec.serves))
    files = generate("k8s", single_spec, example("sensors")[1], "specs/sensors.mlspec")
    kinds = [d["kind"] for d in yaml.safe_load_all(files[f"stream-{serve.name}.yaml"])]
    assert kinds == ["Deployment"]  # one replica: no disruption budget to keep


@pytest.mark.parametrize("name", SPECS)
def test_every_container_runs_a_real_mlspec_command(name: str) -> None:
    """The args of every generated container parse with mlspec's own CLI: no invented command or flag."""
    from mlspec.cli import build_parser

    parser = build_parser()
    containers = [c for _, d in documents(name) for c in _pod(d).get("containers", [])]
    assert containers
    for c in containers:
        assert c["args"][0] == "mlspec"
        args, extra = parser.parse_known_args(c["args"][1:])
        assert extra == [] and args.func.__name__ == f"cmd_{c['args'][1]}", c["args"]


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec", {})
    template = spec.get("jobTemplate", {}).get("spec", {}).get("template") or spec.get("template") or {}
    pod: dict[str, Any] = template.get("spec", {})
    return pod


def test_kserve_inference_service_is_a_custom_predictor_running_mlspec_serve() -> None:
    spec, dag = example("fraud")
    (serve,) = [s for s in spec.serves if s.mode == "realtime"]
    files = generate("k8s", spec, dag, "specs/fraud.mlspec", {"kserve": "true"})
    docs = list(yaml.safe_load_all(files[f"serve-{serve.name}.yaml"]))
    assert [d["kind"] for d in docs] == ["InferenceService", "PodDisruptionBudget"]  # KServe makes the rest
    isvc, pdb = docs
    jsonschema.validate(isvc, ISVC_SCHEMA)
    annotations = isvc["metadata"]["annotations"]
    assert annotations["serving.kserve.io/deploymentMode"] == "Standard"
    assert annotations["serving.kserve.io/autoscalerClass"] == "hpa"
    predictor = isvc["spec"]["predictor"]
    assert not set(predictor) & set(KSERVE_FRAMEWORKS), "a custom predictor: containers only"
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container"
    assert container["args"] == ["mlspec", "serve", "fraud.mlspec", "--host", "0.0.0.0", "--port", "8080"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == serve.replicas == (3, 20)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("cpu", 70)
    # the pod fields are core PodSpec fields: validate them strictly as the template of a real Deployment
    pod = {k: v for k, v in predictor.items() if k in KSERVE_PODSPEC}
    assert set(predictor) - set(pod) <= set(KSERVE_EXTENSION)
    kubernetes_validate.validate({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": isvc["metadata"]["name"] + "-predictor"},
        "spec": {"selector": {"matchLabels": pdb["spec"]["selector"]["matchLabels"]},
                 "strategy": predictor["deploymentStrategy"],
                 "template": {"metadata": {"labels": predictor["labels"], "annotations": predictor["annotations"]},
                              "spec": pod}}}, K8S_VERSION, strict=True)
    assert pdb["spec"]["selector"]["matchLabels"].items() <= predictor["labels"].items()
    kubernetes_validate.validate(pdb, K8S_VERSION, strict=True)
    # the same hardening as the plain Deployment
    (deployment,) = by_kind("fraud", "Deployment")
    plain = deployment["spec"]["template"]["spec"]
    assert {**plain["containers"][0], "name": "kserve-container"} == container
    assert {k: v for k, v in plain.items() if k != "restartPolicy"} == {**pod, "containers": plain["containers"]}
    # before KServe 0.16 the mode is called RawDeployment and scales on CPU by itself
    legacy = generate("k8s", spec, dag, "specs/fraud.mlspec", {"kserve": "true", "kserve_deployment_mode": "RawDeployment"})
    (old, _) = yaml.safe_load_all(legacy[f"serve-{serve.name}.yaml"])
    jsonschema.validate(old, ISVC_SCHEMA)
    assert old["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    assert "scaleMetric" not in old["spec"]["predictor"]
    for bad in ({"kserve": "yes"}, {"kserve": "true", "kserve_deployment_mode": "Serverless"}):
        with pytest.raises(BackendError):
            generate("k8s", spec, dag, "specs/fraud.mlspec", bad)


def test_inference_service_schema_rejects_unknown_fields() -> None:
    spec, dag = example("fraud")
    files = generate("k8s", spec, dag, "specs/fraud.mlspec", {"kserve": "true"})
    isvc = next(yaml.safe_load_all(files["serve-fraud_api.yaml"]))
    isvc["spec"]["predictor"]["replicas"] = 3
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(isvc, ISVC_SCHEMA)


def test_secrets_are_secret_key_refs_and_values_never_appear() -> None:
    for _, doc in documents("fraud"):
        if doc["kind"] not in ("CronJob", "Deployment"):
            continue
        pod = doc["spec"]["jobTemplate"]["spec"]["template"]["spec"] if doc["kind"] == "CronJob" else \
            doc["spec"]["template"]["spec"]
        env = {e["name"]: e for e in pod["containers"][0]["env"]}
        for name in ("FRAUD_ONCALL_WEBHOOK_URL", "SRE_WEBHOOK_URL"):
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": "mlspec-fraud-secrets", "key": name}
            assert "value" not in env[name]


def test_batch_serve_and_monitor_cronjobs() -> None:
    jobs = {d["metadata"]["name"]: d for d in by_kind("churn", "CronJob")}
    score, monitor = jobs["churn-score-churn-risk"], jobs["churn-monitor-churn-risk"]
    assert score["spec"]["schedule"] == "0 2 * * *"
    container = score["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["mlspec", "run", "--until", "serve:churn_risk", "churn.mlspec", "--fail-on-rejected"]
    # a rejected gate (exit 3) fails the Job at once: retrying would only train and reject again
    from mlspec.runtime.runner import EXIT_REJECTED

    rules = score["spec"]["jobTemplate"]["spec"]["podFailurePolicy"]["rules"]
    assert rules == [{"action": "FailJob", "onExitCodes": {"containerName": container["name"], "operator": "In",
                                                           "values": [EXIT_REJECTED]}}]
    assert score["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 2
    container = monitor["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["mlspec", "monitor", "churn.mlspec", "--pushgateway", "$(MLSPEC_PUSHGATEWAY_URL)"]
    assert monitor["spec"]["jobTemplate"]["spec"]["backoffLimit"] == 0


@pytest.mark.parametrize("name", SPECS)
def test_monitor_jobs_push_to_the_pushgateway_set_in_the_configmap(name: str) -> None:
    """`$(VAR)` in args is expanded by Kubernetes from the container's env: the variable must be defined
    there, from a key the generated ConfigMap has."""
    (cm,) = by_kind(name, "ConfigMap")
    assert cm["data"]["pushgateway_url"] == ""  # the user sets it: option pushgateway_url, or a patch
    for job in by_kind(name, "CronJob"):
        container = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
        referenced = {m for a in container["args"] for m in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", a)}
        env = {e["name"]: e for e in container["env"]}
        assert referenced <= set(env), referenced
        if container["args"][1] != "monitor":
            assert not referenced
            continue
        assert referenced == {"MLSPEC_PUSHGATEWAY_URL"}
        ref = env["MLSPEC_PUSHGATEWAY_URL"]["valueFrom"]["configMapKeyRef"]
        assert ref == {"name": cm["metadata"]["name"], "key": "pushgateway_url"}
    assert "set it (option pushgateway_url)" in golden_files(name, "k8s")["kustomization.yaml"]
    spec, dag = example(name)
    files = generate("k8s", spec, dag, f"specs/{name}.mlspec", {"pushgateway_url": "http://pushgateway.monitoring:9091"})
    (cm,) = [d for d in yaml.safe_load_all(files["configmap.yaml"])]
    assert cm["data"]["pushgateway_url"] == "http://pushgateway.monitoring:9091"
    assert "option pushgateway_url" not in files["kustomization.yaml"]


def test_configmap_holds_the_compiled_spec() -> None:
    spec, _ = example("churn")
    (cm,) = by_kind("churn", "ConfigMap")
    assert json.loads(cm["data"]["compiled.json"]) == json.loads(compiled_json(spec))
    assert cm["data"]["fingerprint"] == cm["metadata"]["annotations"]["mlspec.dev/spec-fingerprint"]


def test_prometheus_rules_follow_the_monitor_thresholds() -> None:
    (doc,) = by_kind("churn", "PrometheusRule")
    rules = {r["alert"]: r for g in doc["spec"]["groups"] for r in g["rules"]}
    latency = rules["MlspecChurnChurnRiskLatencyP99"]["expr"]
    assert latency == ('histogram_quantile(0.99, sum by (le, serve) (rate(mlspec_request_duration_seconds_bucket'
                       '{serve=~"churn_api"}[5m]))) > 0.05')
    errors = rules["MlspecChurnChurnRiskErrorRate"]["expr"]
    assert 'mlspec_requests_total{serve=~"churn_api",status=~"5.."}[1h]' in errors and errors.endswith("> 0.01")
    psi = rules["MlspecChurnChurnRiskPsi"]["expr"]
    assert psi.startswith('mlspec_monitor_value{project="churn",monitor="churn_risk",metric="psi",subject=~"activity')
    assert psi.endswith("> 0.25") and "activity\\\\.orders_30d" in psi
    auc = rules["MlspecChurnChurnRiskAuc"]
    assert auc["expr"].endswith("< 0.65") and auc["labels"]["mlspec_retrain"] == "true"
    assert all(r["annotations"]["runbook_url"].startswith("RUNBOOK.md#monitor-rule-churn_risk-") for r in rules.values())


def test_options_are_validated() -> None:
    spec, dag = example("churn")
    for options in ({"image": "bad image"}, {"namespace": "Not_A_Label"}, {"cpu_limit": "lots"},
                    {"monitor_schedule": "every hour"}, {"registry_url": "ftp://x"},
                    {"registry_url": "https://user:secret@models.example/registry.tar.gz"},
                    {"registry_url": "https://models.example/$(id)"}, {"registry_url": "file:///x y"},
                    {"pushgateway_url": "file:///etc/passwd"}, {"pushgateway_url": "http://x/$(id)'"}):
        with pytest.raises(BackendError):
            generate("k8s", spec, dag, "specs/churn.mlspec", options)
    for url in ("https://models.example/churn/registry.tar.gz", "file:///mnt/models/.mlspec/registry"):
        generate("k8s", spec, dag, "specs/churn.mlspec", {"registry_url": url})  # accepted
    files = generate("k8s", spec, dag, "specs/churn.mlspec", {"namespace": "ml", "image": "registry.example/churn:1"})
    docs = [d for t in files.values() for d in yaml.safe_load_all(t) if d["kind"] != "Kustomization"]
    assert all(d["metadata"]["namespace"] == "ml" for d in docs)


def test_comments_wrap_notes_but_keep_commands_on_one_line() -> None:
    files = golden_files("sensors", "k8s")
    (note,) = [t for n, t in files.items() if n.startswith("stream-")]
    comments = [line for line in note.splitlines() if line.startswith("# ")]
    assert len(comments) > 3 and all(len(line) <= 100 for line in comments)
    (command,) = [line for line in files["kustomization.yaml"].splitlines() if "kubectl create secret" in line]
    assert command.startswith("# Secrets") and command.endswith("--from-literal=MLSPEC_STREAM_URL=...")
