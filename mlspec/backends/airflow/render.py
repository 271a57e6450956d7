"""Python source of the generated DAG modules, built from fixed templates.

Every value that comes from a spec or an option enters the source as a literal written by
`py()` (repr of str/int/float/bool/None, recursively for lists and dicts), through
string.Template placeholders in positions where only an expression can stand. Nothing from a
spec is ever an identifier, a statement or part of a command string: commands are argv lists
joined with shlex at parse time, and task ids are checked identifiers.
"""

from __future__ import annotations

import string
from typing import Any


def py(value: Any, indent: int = 0) -> str:
    """A Python literal for plain data, one dict entry or list item per line when it is long."""
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        if not value:
            return "{}"
        items = [f"{pad}{py(k)}: {py(v, indent + 4)},\n" for k, v in value.items()]
        return "{\n" + "".join(items) + " " * indent + "}"
    if isinstance(value, list | tuple):
        inner = ", ".join(py(v, indent) for v in value)
        if len(inner) < 80 and "\n" not in inner:
            return ("(" + inner + ("," if len(value) == 1 else "") + ")") if isinstance(value, tuple) else f"[{inner}]"
        open_, close = ("(", ")") if isinstance(value, tuple) else ("[", "]")
        return open_ + "\n" + "".join(f"{pad}{py(v, indent + 4)},\n" for v in value) + " " * indent + close
    if value is None or isinstance(value, bool | int | float | str):
        return repr(value)
    raise TypeError(f"no Python literal for {type(value).__name__}")


def fill(template: str, **values: str) -> str:
    return string.Template(template).substitute(values)


def with_dag(dag_id: str, description: str, schedule: str, tag: str | None = None) -> str:
    """The `with DAG(...) as dag:` statement every module's body opens with: the same defaults in every
    DAG (start date, no catch-up, one active run, the shared default_args). `schedule` is an expression."""
    tags = ", ".join(["'mlspec'", "PROJECT", *([py(tag)] if tag else [])])
    return fill(WITH_DAG, dag_id=py(dag_id), description=py(description), schedule=schedule, tags=f"[{tags}]")


WITH_DAG = '''with DAG(
    dag_id=$dag_id,
    description=$description,
    schedule=$schedule,
    start_date=START_DATE,
    catchup=False,
    max_active_runs=1,
    default_args=DEFAULT_ARGS,
    tags=$tags,
    doc_md=__doc__,
) as dag:'''


# ---- the shared top of every module ------------------------------------------------------------
PRELUDE = '''"""$title

$doc
"""

from __future__ import annotations

import datetime
import logging
import os
$imports

PROJECT = $project
SPEC = $spec  # relative to the project directory
SPEC_FINGERPRINT = $fingerprint
PROJECT_DIR = os.environ.get("MLSPEC_PROJECT_DIR", $project_dir)
MLSPEC = os.environ.get("MLSPEC_BIN", "mlspec")
RUNBOOK_URL = $runbook_url
SECRETS = $secrets  # env() names of the spec: their values come from $secret_source
START_DATE = datetime.datetime(2025, 1, 1, tzinfo=datetime.timezone.utc)

log = logging.getLogger(__name__)


def on_failure(context):
    """Failure callback: names the task, the spec and where the runbook says what to do."""
    ti = context["ti"]
    log.error("mlspec task %s of DAG %s failed (spec %s, fingerprint %s). Runbook: %s",
              ti.task_id, ti.dag_id, SPEC, SPEC_FINGERPRINT[:12], RUNBOOKS.get(ti.task_id, RUNBOOK_URL))


DEFAULT_ARGS = {
    "owner": $owner,
    "retries": $retries,
    "retry_delay": datetime.timedelta(seconds=$retry_delay),
    "retry_exponential_backoff": 2.0,
    "max_retry_delay": datetime.timedelta(seconds=$max_retry_delay),
    "execution_timeout": datetime.timedelta(minutes=$timeout),
    "on_failure_callback": on_failure,
}
'''

BASH_TASK = '''

def mlspec_task(task_id, args, secrets=(), env=None, wrapper=(), **kwargs):
    """One `mlspec ...` command on the worker, in the project directory (run by the argv `wrapper`, if any)."""
    env = {**{name: "{{ var.value." + name + " }}" for name in secrets}, **(env or {})}  # Variables, never literals
    return BashOperator(task_id=task_id, bash_command=shlex.join([*wrapper, MLSPEC, *args]), cwd=PROJECT_DIR,
                        env=env or None, append_env=True, doc_md=RUNBOOKS.get(task_id, RUNBOOK_URL), **kwargs)
'''

K8S_TASK = '''
IMAGE = $image
NAMESPACE = $namespace
SECRET_NAME = $secret_name  # a Kubernetes Secret with one key per name in SECRETS
WORKSPACE_CLAIM = $workspace_claim
POD_NAMES = $pod_names


def mlspec_task(task_id, args, secrets=(), env=None, wrapper=(), **kwargs):
    """One `mlspec ...` command in a pod of the generated image, on the shared workspace claim (run by the argv
    `wrapper`, if any)."""
    return KubernetesPodOperator(
        task_id=task_id,
        name=POD_NAMES.get(task_id, "mlspec"),
        namespace=NAMESPACE or None,
        image=IMAGE,
        arguments=[*wrapper, "mlspec", *args],
        secrets=[Secret("env", name, SECRET_NAME, name) for name in secrets],
        env_vars={"MLSPEC_WORKSPACE": "/workspace", "MLSPEC_SPEC_FINGERPRINT": SPEC_FINGERPRINT, **(env or {})},
        volumes=[k8s.V1Volume(name="workspace", persistent_volume_claim=k8s.V1PersistentVolumeClaimVolumeSource(
            claim_name=WORKSPACE_CLAIM))],
        volume_mounts=[k8s.V1VolumeMount(name="workspace", mount_path="/workspace")],
        security_context=k8s.V1PodSecurityContext(run_as_non_root=True, run_as_user=10001, fs_group=10001),
        container_security_context=k8s.V1SecurityContext(
            allow_privilege_escalation=False, read_only_root_filesystem=True,
            capabilities=k8s.V1Capabilities(drop=["ALL"])),
        get_logs=True,
        on_finish_action="delete_succeeded_pod",
        doc_md=RUNBOOKS.get(task_id, RUNBOOK_URL),
        **kwargs,
    )
'''

PIPELINE = '''

# task id -> the mlspec node it runs, in run order; edges are the DAG's, between those nodes
NODES = $nodes
EDGES = $edges
TIMEOUT_MINUTES = $timeouts
RUNBOOKS = $runbooks


def node_task(task_id, node):
    """`mlspec run --node NODE`. A gate task runs with --fail-on-rejected: when the gate rejects the candidate
    it exits 3 and fails (not retried: a rejection is deterministic), so scoring waits for a passing model.
    To score with the unchanged champion anyway, mark the failed gate task successful."""
    args = ["run", "--node", node, SPEC]
    kwargs = {"execution_timeout": datetime.timedelta(minutes=TIMEOUT_MINUTES[task_id])}
    if node.startswith("gate:"):
        args.append("--fail-on-rejected")
        kwargs["retries"] = 0
    return mlspec_task(task_id, args, **kwargs)


$with_dag
    tasks = {task_id: node_task(task_id, node) for task_id, node in NODES.items()}
    for upstream, downstream in EDGES:
        tasks[upstream] >> tasks[downstream]
'''

MONITOR = '''

RUNBOOKS = $runbooks
RETRAIN_ASSET = $retrain_asset
# The Prometheus Pushgateway `mlspec monitor --pushgateway URL` pushes the gauge mlspec_monitor_value to (what
# alert rules read), looked up when the task runs: the Airflow Variable $pushgateway_env, else the task's
# environment variable $pushgateway_env, else PUSHGATEWAY_URL (option pushgateway_url). None set: the
# monitor runs without --pushgateway and pushes nothing.
PUSHGATEWAY_URL = $pushgateway_url
PUSHGATEWAY_ENV = {"MLSPEC_PUSHGATEWAY_VARIABLE": "{{ var.value.get('$pushgateway_env', '') }}"}
WITH_PUSHGATEWAY = [  # sh runs the mlspec argv after it, adding `--pushgateway URL` when a URL is set
    "sh", "-c", 'url="$${MLSPEC_PUSHGATEWAY_VARIABLE:-$${$pushgateway_env:-$$1}}"; shift; '
                'exec "$$@" $${url:+--pushgateway "$$url"}', "sh", PUSHGATEWAY_URL,
]

$with_dag
    # exit 1 means an alert fired (the monitor sends it): the task fails and is not retried
    monitor = mlspec_task("monitor", ["monitor", SPEC], secrets=SECRETS, env=PUSHGATEWAY_ENV, wrapper=WITH_PUSHGATEWAY,
                          retries=0, execution_timeout=datetime.timedelta(minutes=$timeout))
    if RETRAIN_ASSET is not None:
        request = BashOperator(task_id="request_retrain", trigger_rule="all_failed", outlets=[RETRAIN_ASSET],
                               bash_command="echo 'a monitor alert fired: retraining requested'", retries=0)
        monitor >> request
'''

RETRAIN = '''

RUNBOOKS = $runbooks
RETRAIN_ASSET = $retrain_asset
# task id -> the model it retrains: the models of monitors with a retrain action or `retrain every`
MODELS = $models

$with_dag
    # retrains on fresh data, gates against the champion, promotes only when the gate passes; a rejected
    # candidate fails the task (exit $exit_rejected, the champion stays). Not retried: a retry would be skipped by the
    # retrain frequency guardrail (exit 0) and turn the rejection green.
    for task_id, model in MODELS.items():
        mlspec_task(task_id, ["retrain", SPEC, "--model", model, "--fail-on-rejected"], secrets=SECRETS, retries=0,
                    execution_timeout=datetime.timedelta(minutes=$timeout))
'''
