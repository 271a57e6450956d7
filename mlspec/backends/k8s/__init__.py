"""Kubernetes target: manifests for the jobs, the online service and its alerts.

batch serve -> CronJob (`mlspec run --until serve:NAME`); realtime serve -> Deployment (probes,
resources, non-root, read-only root filesystem) + Service + HorizontalPodAutoscaler +
PodDisruptionBudget; streaming serve -> Deployment of `mlspec stream` (+ PodDisruptionBudget from
two replicas), the streams' Redis URL from the Secret (MLSPEC_STREAM_URL) unless the online store
is Redis;
monitor -> CronJob (`mlspec monitor`) + PrometheusRule. The compiled spec
sits in a ConfigMap, env() secrets come from one Secret through secretKeyRef, and jobs share a
workspace PersistentVolumeClaim (warehouse, registry, data, outputs).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from mlspec.backends import BackendError
from mlspec.backends.common import (
    Context,
    compiled_json,
    cron,
    dns_label,
    header,
    http_url,
    make_context,
    option_choice,
    option_int,
    secret_envs,
    yaml_documents,
)
from mlspec.backends.k8s.alerts import prometheus_rule
from mlspec.contract import EXIT_REJECTED, PUSHGATEWAY_ENV, STREAM_URL_ENV

if TYPE_CHECKING:
    import networkx as nx

    from mlspec.ir.spec import Monitor, Serve, Spec

KSERVE_MODES = ("Standard", "RawDeployment")  # KServe's raw deployment mode, named Standard since 0.16
KSERVE_CONTAINER = "kserve-container"  # the container KServe takes for the predictor
KSERVE_NAME_LIMIT = 45  # KServe names the predictor's Deployment and Service `<name>-predictor` (63 at most)
PUSHGATEWAY_KEY = "pushgateway_url"  # in the spec ConfigMap
WORKSPACE = "/workspace"  # the project directory inside every container (see the docker target)
REGISTRY_MOUNT = "/var/lib/mlspec"
PORT = 8080
USER_ID = 10001
CONFIGMAP_LIMIT = 900 * 1024  # of the API's 1 MiB per object, leaving room for metadata
IMAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]*", re.ASCII)
QUANTITY = re.compile(r"[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?", re.ASCII)
FILE_URL = re.compile(r"file://[A-Za-z0-9._~/%-]+", re.ASCII)


def default_image(ctx: Context) -> str:
    """The image the docker target builds for this spec: its tag changes whenever the spec does."""
    return f"mlspec-{dns_label(ctx.project)}:{ctx.fingerprint[:12]}"


class KubernetesBackend:
    name = "k8s"
    description = ("Kubernetes manifests: CronJobs, Deployment + Service + HPA + PDB (or a KServe InferenceService), "
                   "PrometheusRule, ConfigMap")
    options: Mapping[str, str] = {
        "image": "",  # default: mlspec-<project>:<fingerprint[:12]> (the docker target's tag)
        "namespace": "",
        "secret_name": "",  # default: mlspec-<project>-secrets
        "workspace_claim": "",  # default: mlspec-<project>-workspace
        "workspace_size": "10Gi",
        "registry_url": "",  # default: the workspace claim's registry, mounted read-only
        # the Pushgateway `mlspec monitor` pushes mlspec_monitor_value to (what the PrometheusRule reads);
        # stored in the spec ConfigMap under pushgateway_url, so it can also be patched there
        "pushgateway_url": "",
        # true: each realtime serve becomes a KServe InferenceService (custom predictor running
        # `mlspec serve`, which KServe turns into Deployment + Service + HPA) instead of those objects
        "kserve": "false",
        "kserve_deployment_mode": "Standard",  # Standard (KServe >= 0.16) | RawDeployment (before 0.16)
        "monitor_schedule": "0 * * * *",
        "cpu_request": "500m", "cpu_limit": "2", "memory_request": "1Gi", "memory_limit": "2Gi",
        "target_cpu_percent": "70",
        "job_timeout_seconds": "7200",
        "runbook_url": "RUNBOOK.md",
    }

    def generate(self, spec: Spec, dag: nx.DiGraph, spec_path: str, options: Mapping[str, str]) -> dict[str, str]:
        ctx = make_context(spec, dag, spec_path)
        k = _Manifests(ctx, options)
        files: dict[str, list[dict[str, Any]]] = {"configmap.yaml": [k.configmap()], "workspace.yaml": [k.workspace()]}
        for serve in spec.serves:
            if serve.mode == "batch":
                files[f"score-{serve.name}.yaml"] = [k.score_cronjob(serve)]
            elif serve.mode == "realtime":
                files[f"serve-{serve.name}.yaml"] = k.inference_service(serve) if k.kserve else k.realtime(serve)
            elif serve.mode == "streaming":
                files[f"stream-{serve.name}.yaml"] = k.streaming(serve)
        for mon in spec.monitors:
            files[f"monitor-{mon.name}.yaml"] = [k.monitor_cronjob(mon), k.rule(mon)]
        files["kustomization.yaml"] = [{"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
                                        "resources": sorted(files)}]
        top = header(ctx, self.name)
        notes = {name: _comment(streaming_note(spec)) for name in files if name.startswith("stream-")}
        notes["kustomization.yaml"] = _usage(k)
        return {name: top + notes.get(name, "") + yaml_documents(docs) for name, docs in sorted(files.items())}


def _comment(lines: list[str], width: int | None = 100) -> str:
    """YAML comment lines, each text wrapped to `width`; width None keeps every text on one line (a command
    to copy and paste)."""
    import textwrap

    if width is not None:
        lines = [line for text in lines for line in textwrap.wrap(text, width - 2)]
    return "".join(f"# {line}\n" for line in lines)


def _usage(k: _Manifests) -> str:
    envs = " ".join(f"--from-literal={e}=..." for e in [*secret_envs(k.ctx.spec), *k.stream_secrets()])
    lines = ["Apply with `kubectl apply -k <this directory>` after building the image (docker target).",
             "Jobs share the workspace claim and the realtime pods read the model registry from it at start:",
             "give it a ReadWriteMany storage class, or set the registry_url option to a registry archive."]
    if envs:
        lines.append(f"Secrets (values never appear here): kubectl create secret generic {k.secret} {envs}")
    if k.ctx.spec.monitors and not k.pushgateway:
        lines.append(f"Monitor jobs push to the Pushgateway in ConfigMap {k.configmap_name} key {PUSHGATEWAY_KEY}: "
                     "set it (option pushgateway_url) or the PrometheusRule's monitor alerts see no data.")
    return _comment(lines, width=None)


class _Manifests:
    def __init__(self, ctx: Context, options: Mapping[str, str]) -> None:
        self.ctx, self.o = ctx, options
        project = ctx.project
        self.image = options["image"] or default_image(ctx)
        if not IMAGE.fullmatch(self.image):
            raise BackendError(f"option image={self.image!r} is not an image reference")
        self.namespace = options["namespace"]
        if self.namespace and dns_label(self.namespace) != self.namespace:
            raise BackendError(f"option namespace={self.namespace!r} is not a DNS label")
        self.secret = options["secret_name"] or dns_label("mlspec", project, "secrets")
        self.claim = options["workspace_claim"] or dns_label("mlspec", project, "workspace")
        for key, value in (("secret_name", self.secret), ("workspace_claim", self.claim)):
            if dns_label(value) != value:
                raise BackendError(f"option {key}={value!r} is not a DNS label")
        for key in ("cpu_request", "cpu_limit", "memory_request", "memory_limit", "workspace_size"):
            if not QUANTITY.fullmatch(options[key]):
                raise BackendError(f"option {key}={options[key]!r} is not a Kubernetes quantity")
        self.registry_url = options["registry_url"] or f"file://{REGISTRY_MOUNT}/.mlspec/registry"
        if self.registry_url.startswith("file://"):
            if not FILE_URL.fullmatch(self.registry_url):
                raise BackendError(f"option registry_url={self.registry_url!r} is not a file:// URL of letters, "
                                   "digits and -._~/%")
        else:  # the same check as every http(s) URL a target writes: plain characters, no credentials
            http_url(self.registry_url, "option registry_url")
        self.pushgateway = options["pushgateway_url"] and http_url(options["pushgateway_url"],
                                                                    "option pushgateway_url")
        self.kserve = option_choice(options, "kserve", ("false", "true")) == "true"
        self.kserve_mode = option_choice(options, "kserve_deployment_mode", KSERVE_MODES)
        self.schedule = cron(options["monitor_schedule"])
        self.timeout = option_int(options, "job_timeout_seconds")
        self.cpu_percent = option_int(options, "target_cpu_percent")
        self.configmap_name = dns_label("mlspec", project, "spec")

    # ---- shared pieces ---------------------------------------------------------------------
    def meta(self, name: str, component: str, extra: Mapping[str, str] | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if self.namespace:
            meta["namespace"] = self.namespace
        meta["labels"] = {**self.labels(component), **(extra or {})}
        meta["annotations"] = {"mlspec.dev/spec-fingerprint": self.ctx.fingerprint}
        return meta

    def labels(self, component: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": "mlspec", "app.kubernetes.io/part-of": dns_label(self.ctx.project),
                "app.kubernetes.io/component": component, "app.kubernetes.io/managed-by": "mlspec"}

    def env(self, secrets: bool) -> list[dict[str, Any]]:
        env: list[dict[str, Any]] = [{"name": "MLSPEC_WORKSPACE", "value": WORKSPACE},
                                     {"name": "MLSPEC_SPEC_FINGERPRINT", "value": self.ctx.fingerprint}]
        if secrets:
            env += [{"name": e, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": e}}}
                    for e in secret_envs(self.ctx.spec)]
        return env

    def container(self, args: list[str], *, secrets: bool, extra_mounts: list[dict[str, Any]] | None = None,
                  env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "name": "mlspec",
            "image": self.image,
            "imagePullPolicy": "IfNotPresent",
            "args": args,
            "env": self.env(secrets) + (env or []),
            "resources": {"requests": {"cpu": self.o["cpu_request"], "memory": self.o["memory_request"]},
                          "limits": {"cpu": self.o["cpu_limit"], "memory": self.o["memory_limit"]}},
            "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                "runAsNonRoot": True, "capabilities": {"drop": ["ALL"]}},
            "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}, {"name": "tmp", "mountPath": "/tmp"},
                             {"name": "spec", "mountPath": "/etc/mlspec", "readOnly": True},
                             *(extra_mounts or [])],
        }

    def pod(self, container: dict[str, Any], workspace: dict[str, Any], restart: str,
            extra_volumes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        return {
            "restartPolicy": restart,
            "automountServiceAccountToken": False,
            "securityContext": {"runAsNonRoot": True, "runAsUser": USER_ID, "runAsGroup": USER_ID,
                                "fsGroup": USER_ID, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [container],
            "volumes": [{"name": "workspace", **workspace}, {"name": "tmp", "emptyDir": {}},
                        {"name": "spec", "configMap": {"name": self.configmap_name}}, *(extra_volumes or [])],
        }

    def cronjob(self, name: str, component: str, schedule: str, args: list[str], *, retries: int,
                extra: Mapping[str, str], fail_job_on: tuple[int, ...] = (),
                env: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        labels = {**self.labels(component), **extra}
        pod = self.pod(self.container(args, secrets=True, env=env), {"persistentVolumeClaim": {"claimName": self.claim}},
                       "Never")
        job: dict[str, Any] = {"backoffLimit": retries}
        if fail_job_on:  # exit codes that are verdicts, not faults: fail the Job at once, no retry
            job["podFailurePolicy"] = {"rules": [{"action": "FailJob", "onExitCodes": {
                "containerName": "mlspec", "operator": "In", "values": list(fail_job_on)}}]}
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": self.meta(name, component, extra),
            "spec": {
                "schedule": schedule,
                "timeZone": "Etc/UTC",
                "concurrencyPolicy": "Forbid",
                "startingDeadlineSeconds": 3600,
                "successfulJobsHistoryLimit": 3,
                "failedJobsHistoryLimit": 3,
                "jobTemplate": {"metadata": {"labels": labels}, "spec": {
                    **job,
                    "activeDeadlineSeconds": self.timeout,
                    "ttlSecondsAfterFinished": 86400,
                    "template": {"metadata": {"labels": labels}, "spec": pod},
                }},
            },
        }

    # ---- resources -------------------------------------------------------------------------
    def configmap(self) -> dict[str, Any]:
        text = compiled_json(self.ctx.spec)
        if len(text.encode()) > CONFIGMAP_LIMIT:
            raise BackendError(f"the compiled spec is {len(text.encode()) // 1024} KiB: more than a ConfigMap holds "
                               f"({CONFIGMAP_LIMIT // 1024} KiB of its 1 MiB)")
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(self.configmap_name, "spec"),
                "data": {"compiled.json": text + "\n", "fingerprint": self.ctx.fingerprint,
                         PUSHGATEWAY_KEY: self.pushgateway, "spec": self.ctx.spec_arg}}

    def workspace(self) -> dict[str, Any]:
        return {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": self.meta(self.claim, "workspace"),
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": self.o["workspace_size"]}}}}

    def score_cronjob(self, serve: Serve) -> dict[str, Any]:
        assert serve.schedule is not None
        # the run scores with the champion even when the gate rejects the new candidate, then exits 3
        # (--fail-on-rejected): the Job fails, visibly, without retraining again on retry
        args = ["mlspec", "run", "--until", f"serve:{serve.name}", self.ctx.spec_arg, "--fail-on-rejected"]
        return self.cronjob(dns_label(self.ctx.project, "score", serve.name, limit=52), "score", cron(serve.schedule),
                            args, retries=2, extra={"mlspec.dev/serve": dns_label(serve.name)},
                            fail_job_on=(EXIT_REJECTED,))

    def monitor_cronjob(self, mon: Monitor) -> dict[str, Any]:
        # exit 1 means an alert fired: the alert is sent by the job itself, so it is not retried.
        # The measurements go to the Pushgateway named in the spec ConfigMap (Kubernetes expands
        # $(VAR) in args from the container's env), as the gauge the PrometheusRule reads.
        env = [{"name": PUSHGATEWAY_ENV, "valueFrom": {"configMapKeyRef": {"name": self.configmap_name,
                                                                            "key": PUSHGATEWAY_KEY}}}]
        args = ["mlspec", "monitor", self.ctx.spec_arg, "--pushgateway", f"$({PUSHGATEWAY_ENV})"]
        return self.cronjob(dns_label(self.ctx.project, "monitor", mon.name, limit=52), "monitor", self.schedule,
                            args, retries=0, extra={"mlspec.dev/monitor": dns_label(mon.name)}, env=env)

    def rule(self, mon: Monitor) -> dict[str, Any]:
        doc = prometheus_rule(self.ctx, mon, self.labels("alerts"), self.o["runbook_url"])
        if self.namespace:
            doc["metadata"] = {"name": doc["metadata"]["name"], "namespace": self.namespace,
                               "labels": doc["metadata"]["labels"]}
        return doc

    def deployment(self, serve: Serve, component: str, annotations: Mapping[str, str] | None = None,
                   command: list[str] | None = None,
                   env: list[dict[str, Any]] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """The Deployment of an online serve block running `mlspec serve` (or `command`) with probes,
        resources, non-root, read-only root filesystem, and its pod selector."""
        name = dns_label(self.ctx.project, serve.name)
        extra = {"mlspec.dev/serve": dns_label(serve.name)}
        selector = {"app.kubernetes.io/part-of": dns_label(self.ctx.project), "mlspec.dev/serve": dns_label(serve.name)}
        low, _ = serve.replicas or (1, 1)
        local_registry = self.registry_url.startswith(f"file://{REGISTRY_MOUNT}/")
        mounts = [{"name": "registry", "mountPath": REGISTRY_MOUNT, "readOnly": True}] if local_registry else []
        volumes = ([{"name": "registry", "persistentVolumeClaim": {"claimName": self.claim, "readOnly": True}}]
                   if local_registry else [])
        args = command or ["mlspec", "serve", self.ctx.spec_arg]
        container = self.container([*args, "--host", "0.0.0.0", "--port", str(PORT)], secrets=True,
                                   extra_mounts=mounts,
                                   env=[{"name": "MLSPEC_REGISTRY_URL", "value": self.registry_url}, *(env or [])])
        container["ports"] = [{"name": "http", "containerPort": PORT, "protocol": "TCP"}]
        container["startupProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 2,
                                     "failureThreshold": 60}
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}, "periodSeconds": 5,
                                       "timeoutSeconds": 2, "failureThreshold": 3}
        container["livenessProbe"] = {"httpGet": {"path": "/health", "port": "http"}, "periodSeconds": 10,
                                      "timeoutSeconds": 2, "failureThreshold": 3}
        template_meta = {"labels": {**self.labels(component), **extra},
                         "annotations": {"mlspec.dev/spec-fingerprint": self.ctx.fingerprint,
                                         "prometheus.io/scrape": "true", "prometheus.io/port": str(PORT),
                                         "prometheus.io/path": "/metrics"}}
        pod = self.pod(container, {"emptyDir": {}}, "Always", volumes)
        pod["terminationGracePeriodSeconds"] = 30
        meta = self.meta(name, component, extra)
        if annotations:
            meta["annotations"] = {**meta["annotations"], **annotations}
        deployment = {
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
            "spec": {"replicas": low, "revisionHistoryLimit": 5, "selector": {"matchLabels": selector},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": template_meta, "spec": pod}},
        }
        return deployment, selector

    def pdb(self, serve: Serve, component: str, selector: dict[str, str]) -> dict[str, Any]:
        name = dns_label(self.ctx.project, serve.name)
        return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
                "metadata": self.meta(name, component, {"mlspec.dev/serve": dns_label(serve.name)}),
                "spec": {"maxUnavailable": 1, "selector": {"matchLabels": selector}}}

    def realtime(self, serve: Serve) -> list[dict[str, Any]]:
        deployment, selector = self.deployment(serve, "serve")
        name, meta = deployment["metadata"]["name"], self.meta(deployment["metadata"]["name"], "serve",
                                                               {"mlspec.dev/serve": dns_label(serve.name)})
        low, high = serve.replicas or (1, 1)
        service = {"apiVersion": "v1", "kind": "Service", "metadata": meta,
                   "spec": {"type": "ClusterIP", "selector": selector,
                            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]}}
        hpa = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": meta,
               "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                        "minReplicas": low, "maxReplicas": high,
                        "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                            "type": "Utilization", "averageUtilization": self.cpu_percent}}}]}}
        return [deployment, service, hpa, self.pdb(serve, "serve", selector)]

    def inference_service(self, serve: Serve) -> list[dict[str, Any]]:
        """A realtime serve block as a KServe InferenceService: a custom predictor (our server is not a
        KServe model server) with the Deployment's pod, which KServe's raw deployment mode turns into a
        Deployment, Service and HorizontalPodAutoscaler; plus the PodDisruptionBudget, on the pod labels.
        Knative (serverless) mode is not generated: it refuses the volumes the pod mounts by default."""
        deployment, selector = self.deployment(serve, "serve")
        template = deployment["spec"]["template"]
        pod = {k: v for k, v in template["spec"].items() if k != "restartPolicy"}
        pod["containers"] = [{**c, "name": KSERVE_CONTAINER} for c in pod["containers"]]
        low, high = serve.replicas or (1, 1)
        predictor: dict[str, Any] = {"minReplicas": low, "maxReplicas": high}
        if self.kserve_mode == "Standard":  # KServe before 0.16 scales on CPU by default; 0.16 reads these
            predictor.update(scaleMetric="cpu", scaleTarget=self.cpu_percent)
        predictor.update(labels=template["metadata"]["labels"], annotations=template["metadata"]["annotations"],
                         deploymentStrategy=deployment["spec"]["strategy"], **pod)
        name = dns_label(self.ctx.project, serve.name, limit=KSERVE_NAME_LIMIT)
        meta = self.meta(name, "serve", {"mlspec.dev/serve": dns_label(serve.name)})
        meta["annotations"] = {**meta["annotations"], "serving.kserve.io/deploymentMode": self.kserve_mode,
                               "serving.kserve.io/autoscalerClass": "hpa"}
        isvc = {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": meta,
                "spec": {"predictor": predictor}}
        return [isvc, self.pdb(serve, "serve", selector)]

    def stream_secrets(self) -> list[str]:
        """Secret keys the stream consumers need beyond the spec's env() references: the streams'
        Redis URL, unless the spec's online store is Redis (then `mlspec stream` uses that)."""
        streaming = any(s.mode == "streaming" for s in self.ctx.spec.serves)
        return [STREAM_URL_ENV] if streaming and self.ctx.spec.project.online_store != "redis" else []

    def streaming(self, serve: Serve) -> list[dict[str, Any]]:
        """A streaming serve block: a Deployment of `mlspec stream` (one consumer per pod, named after
        the pod, in the serve block's consumer group), `replicas` at the range's lower bound, no
        Service or autoscaler (no request traffic to route or scale on); /health and /ready on the
        same port as the realtime pods. A PodDisruptionBudget keeps all but one replica up through node
        drains when there are two or more; a pod that is evicted or dies leaves its pending entries to
        the others, which claim them."""
        streams = {"mlspec.dev/stream-input": serve.input_stream, "mlspec.dev/stream-output": serve.output_stream}
        env = [{"name": e, "valueFrom": {"secretKeyRef": {"name": self.secret, "key": e}}}
               for e in self.stream_secrets()]
        deployment, selector = self.deployment(serve, "stream", {k: v for k, v in streams.items() if v},
                                               ["mlspec", "stream", self.ctx.spec_arg, "--serve", serve.name], env)
        low, _ = serve.replicas or (1, 1)
        return [deployment, *([self.pdb(serve, "stream", selector)] if low >= 2 else [])]


def streaming_note(spec: Spec) -> list[str]:
    """What the stream Deployment's file says about where its Redis and online store are."""
    lines = ["Each pod runs `mlspec stream`: one consumer of the serve block's consumer group, scoring the "
             "input stream's events into the output stream (dead letters: <output>.dead)."]
    if spec.project.online_store == "redis":
        lines.append("The streams live in the online store's Redis (the spec's online_store).")
    else:
        lines.append(f"The streams' Redis URL comes from the Secret's {STREAM_URL_ENV} key. The spec's online "
                     "store is embedded (SQLite inside each pod): the pods do not share history, so features see "
                     "only the events one pod scored; keep the online store in Redis (online_store = "
                     "redis(env(\"NAME\"))) to run several replicas.")
    return lines


BACKEND = KubernetesBackend()
