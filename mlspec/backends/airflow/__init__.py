"""Airflow 3 target: a pipeline DAG, a monitoring DAG and a retraining DAG per spec.

`<project>_pipeline` has one task per node `mlspec run` executes (extract, check, label,
features, dataset, train, gate, score), each running `mlspec run --node KIND:NAME SPEC`, with
the DAG's edges, scheduled by the batch serve blocks. `<project>_monitor` runs `mlspec monitor`
on a schedule; when an alert fires and a monitor has a `-> retrain` action it emits the retrain
asset, which (with `retrain every`) schedules `<project>_retrain`: `mlspec retrain --model M
--fail-on-rejected` per retrained model, so a rejected candidate fails its task (exit 3,
mlspec.contract.EXIT_REJECTED).
Tasks use BashOperator (default) or KubernetesPodOperator with the docker target's image.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from mlspec.backends import BackendError
from mlspec.backends.airflow import render
from mlspec.backends.airflow.render import fill, py, with_dag
from mlspec.backends.common import (
    DERIVED_OPTIONS,
    Context,
    cron,
    dns_label,
    header,
    http_url,
    make_context,
    option_choice,
    option_int,
    secret_envs,
    step,
)
from mlspec.contract import EXIT_REJECTED, PUSHGATEWAY_ENV

if TYPE_CHECKING:
    import networkx as nx

    from mlspec.ir.spec import Spec

FALLBACK = '''try:
    from airflow.sdk import $names
except ImportError:  # Airflow 3.0 / 3.1 keep them in airflow.timetables
$fallback'''
TIMETABLE_HOME = {"AssetOrTimeSchedule": "airflow.timetables.assets",
                  "DeltaTriggerTimetable": "airflow.timetables.trigger",
                  "MultipleCronTriggerTimetable": "airflow.timetables.trigger"}


def task_id(nid: str) -> str:
    """`source:orders` -> `extract_orders` (the same names as the other targets' jobs)."""
    return step(nid)


class AirflowBackend:
    name = "airflow"
    description = "Airflow 3 DAGs: pipeline (one task per node), monitoring, retraining (asset-triggered)"
    options: Mapping[str, str] = {
        "operator": "bash",  # bash | kubernetes
        "project_dir": "/workspace",  # where workers find the spec when $MLSPEC_PROJECT_DIR is unset
        "monitor_schedule": "0 * * * *",
        "retries": "2",
        "retry_delay_seconds": "60",
        "max_retry_delay_seconds": "1800",
        "timeout_minutes": "60",
        "train_timeout_minutes": "180",
        "runbook_url": "RUNBOOK.md",
        "image": "",  # kubernetes: default mlspec-<project>:<fingerprint[:12]>
        "namespace": "",
        "secret_name": "",  # kubernetes: default mlspec-<project>-secrets
        "workspace_claim": "",  # kubernetes: default mlspec-<project>-workspace
        # the Pushgateway the monitor task pushes mlspec_monitor_value to when neither the Airflow Variable nor
        # the environment variable MLSPEC_PUSHGATEWAY_URL is set when it runs (prefer those: no URL in the file)
        "pushgateway_url": "",
    }

    # the options whose empty default is filled in (for --list-targets; the others are unset when empty)
    derived_options: Mapping[str, str] = {k: DERIVED_OPTIONS[k] for k in ("image", "secret_name", "workspace_claim")}

    def generate(self, spec: Spec, dag: nx.DiGraph, spec_path: str, options: Mapping[str, str]) -> dict[str, str]:
        ctx = make_context(spec, dag, spec_path)
        m = _Modules(ctx, options)
        files = {}
        if ctx.nodes:
            files[f"{ctx.project}_pipeline.py"] = m.pipeline()
        if spec.monitors:
            files[f"{ctx.project}_monitor.py"] = m.monitor()
        if m.retrain_wanted:
            files[f"{ctx.project}_retrain.py"] = m.retrain()
        top = header(ctx, self.name)
        return {name: top + text for name, text in files.items()}


class _Modules:
    def __init__(self, ctx: Context, options: Mapping[str, str]) -> None:
        from mlspec.backends.k8s import IMAGE, default_image

        self.ctx, self.o = ctx, options
        self.operator = option_choice(options, "operator", ("bash", "kubernetes"))
        self.monitor_schedule = cron(options["monitor_schedule"])
        self.ints = {k: option_int(options, k) for k in ("retries", "retry_delay_seconds", "max_retry_delay_seconds",
                                                       "timeout_minutes", "train_timeout_minutes")}
        self.pushgateway = options["pushgateway_url"] and http_url(options["pushgateway_url"],
                                                                    "option pushgateway_url")
        self.image = options["image"] or default_image(ctx)
        if not IMAGE.fullmatch(self.image):
            raise BackendError(f"option image={self.image!r} is not an image reference")
        monitors = ctx.spec.monitors
        self.retrain_on_alert = any(a.kind == "retrain" for m in monitors for r in m.rules for a in r.actions)
        intervals = [m.retrain_every_ms for m in monitors if m.retrain_every_ms]
        self.retrain_every_ms = min(intervals) if intervals else None
        self.retrain_wanted = self.retrain_on_alert or self.retrain_every_ms is not None
        # `mlspec retrain --model M` for each model a monitor retrains (in spec order): one task each
        self.retrain_models = list(dict.fromkeys(
            m.model for m in monitors
            if m.retrain_every_ms or any(a.kind == "retrain" for r in m.rules for a in r.actions)))
        self.asset = f"mlspec://{ctx.project}/retrain"

    def runbook(self, anchor: str) -> str:
        return f"{self.o['runbook_url']}#{anchor}"

    def node_runbook(self, nid: str) -> str:
        """The runbook section (`mlspec runbook`) of a node; the overview for nodes without one."""
        from mlspec.ops.runbook import runbook_anchor

        kind, name = nid.split(":", 1)
        section = {"source": ("source", name), "check": ("check", name), "model": ("gate", name),
                   "gate": ("gate", name)}.get(kind, ("section", "overview"))
        return self.runbook(runbook_anchor(*section))

    def prelude(self, title: str, doc: str, sdk: list[str], bash: bool = False) -> str:
        timetables = sorted(n for n in sdk if n in TIMETABLE_HOME)
        direct = sorted({"DAG", *(n for n in sdk if n not in TIMETABLE_HOME)})
        lines: list[str] = []
        if self.operator == "bash":
            lines += ["import shlex", "", "from airflow.providers.standard.operators.bash import BashOperator"]
        else:
            lines += ["", *(["from airflow.providers.standard.operators.bash import BashOperator"] if bash else []),
                      "from airflow.providers.cncf.kubernetes.operators.pod import KubernetesPodOperator",
                      "from airflow.providers.cncf.kubernetes.secret import Secret"]
        lines.append(f"from airflow.sdk import {', '.join(direct)}")
        if self.operator == "kubernetes":
            lines.append("from kubernetes.client import models as k8s")
        imports = "\n".join(lines)
        if timetables:
            fallback = "".join(f"    from {TIMETABLE_HOME[n]} import {n}\n" for n in timetables).rstrip("\n")
            imports += "\n\n" + fill(FALLBACK, names=", ".join(timetables), fallback=fallback)
        envs = secret_envs(self.ctx.spec)
        source = ("Airflow Variables of the same names" if self.operator == "bash"
                  else "the Kubernetes Secret SECRET_NAME")
        text = fill(render.PRELUDE, title=title, doc=doc, imports=imports, project=py(self.ctx.project),
                    spec=py(self.ctx.spec_arg), fingerprint=py(self.ctx.fingerprint),
                    project_dir=py(self.o["project_dir"]), runbook_url=py(self.o["runbook_url"]),
                    secrets=py(tuple(envs)), secret_source=source, owner=py(self._owner()),
                    retries=py(self.ints["retries"]), retry_delay=py(self.ints["retry_delay_seconds"]),
                    max_retry_delay=py(self.ints["max_retry_delay_seconds"]), timeout=py(self.ints["timeout_minutes"]))
        return text + self.task_factory()

    def _owner(self) -> str:
        owner = self.ctx.spec.project.owner
        return owner if owner else "mlspec"

    def task_factory(self) -> str:
        if self.operator == "bash":
            return render.BASH_TASK
        project = self.ctx.project
        pods = {t: dns_label(project, t, limit=50) for t in self.task_ids()}
        return fill(render.K8S_TASK, image=py(self.image), namespace=py(self.o["namespace"]),
                    secret_name=py(self.o["secret_name"] or dns_label("mlspec", project, "secrets")),
                    workspace_claim=py(self.o["workspace_claim"] or dns_label("mlspec", project, "workspace")),
                    pod_names=py(pods))

    def task_ids(self) -> list[str]:
        return [task_id(n) for n in self.ctx.nodes] + ["monitor", *self.retrain_tasks()]

    def retrain_tasks(self) -> dict[str, str]:
        """Task id -> model of the retraining DAG: `retrain_<model>`."""
        return {f"retrain_{m}": m for m in self.retrain_models}

    # ---- modules ------------------------------------------------------------------------------
    def pipeline(self) -> str:
        ctx = self.ctx
        crons = sorted({cron(s.schedule) for s in ctx.spec.serves if s.mode == "batch" and s.schedule})
        sdk = ["MultipleCronTriggerTimetable"] if len(crons) > 1 else []
        if not crons:
            schedule = "None"  # no batch serve: triggered by hand (training also runs in the retraining DAG)
        elif len(crons) == 1:
            schedule = py(crons[0])
        else:
            schedule = f"MultipleCronTriggerTimetable({', '.join(map(py, crons))}, timezone='UTC')"
        nodes = {task_id(n): n for n in ctx.nodes}
        timeouts = {t: self.ints["train_timeout_minutes" if n.startswith("model:") else "timeout_minutes"]
                    for t, n in nodes.items()}
        runbooks = {t: self.node_runbook(n) for t, n in nodes.items()}
        doc = (f"The mlspec pipeline of project {ctx.project}: extract -> check -> features -> train -> gate\n"
               "(registers the model, promoted when the gate passes) -> score. One task per node that\n"
               "`mlspec run` executes, with the mlspec DAG's dependencies. A check that stops the run (on_fail =\n"
               "fail, a failed dataset rule, every row of a source quarantined) fails its task; a gate that\n"
               f"rejects the candidate fails the gate task (exit {EXIT_REJECTED}) and scoring waits.")
        body = fill(render.PIPELINE, nodes=py(nodes), edges=py([(task_id(a), task_id(b)) for a, b in ctx.edges]),
                    timeouts=py(timeouts), runbooks=py(runbooks),
                    with_dag=with_dag(f"{ctx.project}_pipeline", f"mlspec pipeline of {ctx.project}", schedule))
        return self.prelude(f"{ctx.project}: the mlspec pipeline.", doc, sdk) + body

    def monitor(self) -> str:
        ctx = self.ctx
        sdk = ["Asset"] if self.retrain_on_alert else []
        asset = (f"Asset(name={py(f'mlspec_{ctx.project}_retrain')}, uri={py(self.asset)})"
                 if self.retrain_on_alert else "None")
        runbooks = {"monitor": self.runbook("section-paged"), "request_retrain": self.runbook("section-paged")}
        doc = ("Runs `mlspec monitor` on a schedule. The monitor sends its own alerts; exit 1 (an alert fired)\n"
               "fails the task, and when a monitor has a `-> retrain` action the retrain asset is emitted.\n"
               f"With a Pushgateway URL (the Airflow Variable or environment variable {PUSHGATEWAY_ENV},\n"
               "or the option pushgateway_url) it pushes mlspec_monitor_value, which alert rules read.")
        body = fill(render.MONITOR, runbooks=py(runbooks), retrain_asset=asset, timeout=py(self.ints["timeout_minutes"]),
                    pushgateway_url=py(self.pushgateway), pushgateway_env=PUSHGATEWAY_ENV,
                    with_dag=with_dag(f"{ctx.project}_monitor", f"mlspec monitors of {ctx.project}",
                                      py(self.monitor_schedule), "monitoring"))
        return self.prelude(f"{ctx.project}: mlspec monitoring.", doc, sdk, bash=self.retrain_on_alert) + body

    def retrain(self) -> str:
        ctx = self.ctx
        every = self.retrain_every_ms
        asset_expr = f"Asset(name={py(f'mlspec_{ctx.project}_retrain')}, uri={py(self.asset)})"
        sdk: list[str] = []
        delta = f"DeltaTriggerTimetable(datetime.timedelta(milliseconds={every}))" if every else ""
        if self.retrain_on_alert and every:
            sdk = ["Asset", "AssetOrTimeSchedule", "DeltaTriggerTimetable"]
            schedule = f"AssetOrTimeSchedule(timetable={delta}, assets=RETRAIN_ASSET)"
        elif self.retrain_on_alert:
            sdk = ["Asset"]
            schedule = "[RETRAIN_ASSET]"
        else:
            sdk = ["DeltaTriggerTimetable"]
            schedule = delta
        doc = ("Runs `mlspec retrain`: when a monitor's retrain action fires (the retrain asset) and every\n"
               "`retrain every` interval. The gate decides whether the new model becomes the champion; a rejected\n"
               f"candidate fails the task (exit {EXIT_REJECTED}, not retried) and the champion stays.")
        tasks = self.retrain_tasks()
        body = fill(render.RETRAIN, runbooks=py({t: self.node_runbook(f"gate:{m}") for t, m in tasks.items()}),
                    models=py(tasks),
                    retrain_asset=asset_expr if self.retrain_on_alert else "None",
                    timeout=py(self.ints["train_timeout_minutes"]), exit_rejected=py(EXIT_REJECTED),
                    with_dag=with_dag(f"{ctx.project}_retrain", f"mlspec retraining of {ctx.project}", schedule,
                                      "retraining"))
        return self.prelude(f"{ctx.project}: mlspec retraining.", doc, sdk) + body


BACKEND = AirflowBackend()
